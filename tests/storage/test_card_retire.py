"""Storage for issue 14 item 2 on both engines: the card's message id is recorded with the acknowledgement,
and a result posted as its own message owes the card's retirement in the same transaction as DELIVERED."""

from __future__ import annotations

from storage import ComparePairing, JobState, NewJob, Store

NOW = 1_800_000_000.0


def new_job(model: str = "kling") -> NewJob:
    return NewJob(user_id=1, model=model, provider="simulated", request_json='{"prompt": "x"}', price=10,
                  interaction_token="enc")


async def rendered(store: Store, job_id: int) -> None:
    for state in (JobState.SUBMITTING, JobState.SUBMITTED, JobState.DOWNLOADED):
        await store.jobs.update(job_id, state=state, now=NOW)


async def test_acknowledge_records_the_card_once_with_the_ack(store: Store) -> None:
    [job] = await store.jobs.create([new_job()], now=NOW)
    await store.jobs.acknowledge([job.id], now=NOW + 1, card_message_id=555)
    await store.jobs.acknowledge([job.id], now=NOW + 2, card_message_id=666)  # a second ack changes nothing
    acked = await store.jobs.get(job.id)
    assert acked is not None and (acked.acked_at, acked.card_message_id) == (NOW + 1, 555)


async def test_delivered_as_its_own_message_owes_one_retire_row(store: Store) -> None:
    a, b = await store.jobs.create([new_job(), new_job()], now=NOW)
    for job in (a, b):
        await rendered(store, job.id)
    await store.jobs.update(a.id, state=JobState.DELIVERED, delivered_message_id=1, retire_card=True, now=NOW)
    await store.jobs.update(b.id, state=JobState.DELIVERED, delivered_message_id=2, now=NOW)  # card became result
    [row] = await store.jobs.outbox_for_job(a.id)
    assert (row["kind"], row["dedup_key"], row["next_run_at"]) == ("retire", f"retire{a.id}", NOW)
    assert await store.jobs.outbox_for_job(b.id) == []
    [claimed] = await store.jobs.claim_outbox("w1", lease_seconds=30, now=NOW)
    assert (claimed.job_id, claimed.kind) == (a.id, "retire")


async def test_a_compare_pair_owes_one_retirement_for_its_shared_card(store: Store) -> None:
    kling, sora = await store.jobs.create([new_job("kling"), new_job("sora")], now=NOW,
                                          compare=ComparePairing(blind=False, slot_a="kling"))
    for job in (kling, sora):
        await rendered(store, job.id)
        await store.jobs.update(job.id, state=JobState.DELIVERED, delivered_message_id=9, retire_card=True, now=NOW)
    rows = await store.jobs.outbox_for_job(kling.id) + await store.jobs.outbox_for_job(sora.id)
    assert [(row["kind"], row["dedup_key"]) for row in rows] == [("retire", f"retire-cmp{kling.compare_id}")]
