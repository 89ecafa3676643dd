"""Provider HTTP metrics: every request of a real adapter is counted and timed, by outcome."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot import metrics
from bot.config import Settings
from bot.providers.base import ErrorKind, JobContext, ProviderError
from bot.providers.replicate import ReplicateProvider
from bot.requests import parse_request
from tests.bot.providers.fakes import FakeProviders


def samples(recorder: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = recorder.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_requests_are_counted_by_provider_and_outcome(fake: FakeProviders, provider_settings: Settings) -> None:
    recorder = metrics.Metrics()
    token = metrics.current.set(recorder)
    adapter = ReplicateProvider(provider_settings)
    try:
        ctx = JobContext(job_id=1, request=parse_request("kling", prompt="A fox"))
        task = await adapter.submit(ctx)
        fake.fail(r"/predictions/", status=503)
        with pytest.raises(ProviderError) as raised:
            await adapter.status(task, ctx)
        assert raised.value.kind is ErrorKind.TRANSIENT
        fake.fail(r"/predictions/", status=429)
        with pytest.raises(ProviderError):
            await adapter.status(task, ctx)
        await adapter.status(task, ctx)
    finally:
        metrics.current.reset(token)
        await adapter.aclose()
    seen = samples(recorder)
    count = seen[("videobot_provider_requests_total", (("outcome", "2xx"), ("provider", "replicate")))]
    assert count == 2
    assert seen[("videobot_provider_requests_total", (("outcome", "5xx"), ("provider", "replicate")))] == 1
    assert seen[("videobot_provider_requests_total", (("outcome", "429"), ("provider", "replicate")))] == 1
    assert seen[("videobot_provider_request_seconds_count", (("provider", "replicate"),))] == 4


async def test_a_refused_connection_counts_as_error(provider_settings: Settings) -> None:
    recorder = metrics.Metrics()
    token = metrics.current.set(recorder)
    adapter = ReplicateProvider(provider_settings.model_copy(update={"replicate_api_base": "http://127.0.0.1:9"}))
    try:
        with pytest.raises(ProviderError):
            await adapter.submit(JobContext(job_id=1, request=parse_request("kling", prompt="A fox")))
    finally:
        metrics.current.reset(token)
        await adapter.aclose()
    seen = samples(recorder)
    assert seen[("videobot_provider_requests_total", (("outcome", "error"), ("provider", "replicate")))] == 1
