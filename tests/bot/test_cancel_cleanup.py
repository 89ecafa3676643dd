"""A job canceled while its video downloads leaves no file behind (it was refunded; nobody may fetch it)."""

from __future__ import annotations

from pathlib import Path

from bot.poller import Poller
from bot.providers.base import JobContext, ProviderState, StatusResult
from storage import JobState, Store
from tests.bot.test_runner import make_job, parts  # noqa: F401  (the fixture)


async def test_cancel_during_download_removes_the_file(store: Store, parts) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    runner, provider, notifier, clock = parts
    poller = Poller(store, runner, runner.settings)
    job_id = await make_job(store, clock)
    real_fetch = type(provider).fetch

    async def fetch_then_cancel(self, result_url: str, dest: Path, ctx: JobContext, *, max_bytes: int) -> int:
        size = await real_fetch(self, result_url, dest, ctx, max_bytes=max_bytes)
        assert dest.exists()
        # The user presses Cancel while the bytes arrive: the same update the service makes.
        await store.jobs.update(job_id, state=JobState.CANCELED, error_code="canceled",
                                error_message="canceled by the user")
        return size

    provider.fetch = fetch_then_cancel.__get__(provider)
    provider.statuses = [StatusResult(ProviderState.SUCCEEDED, result_url="https://cdn.example/v.mp4")]
    [job] = await store.jobs.claim_due(poller.owner, now=clock.now, lease_seconds=60, limit=1)
    await runner.step(job)  # submit
    clock.now += 1000
    [job] = await store.jobs.claim_due(poller.owner, now=clock.now, lease_seconds=60, limit=1)
    await poller._guarded(job)  # poll -> download -> the job is found canceled
    video_dir = poller.settings.video_dir
    assert "fetch" in provider.calls
    assert list(video_dir.glob("*.mp4")) == [] and list(video_dir.glob("*.part")) == []
    final = await store.jobs.get(job_id)
    assert final.state is JobState.CANCELED and final.result_path is None
    assert notifier.delivered == []
