"""Storage for issue 13 on both engines: submit intent, lease renewal, acknowledgements, the outbox,
and the cancel charge."""

from __future__ import annotations

import pytest

from storage import JobState, LeaseLost, LedgerKind, NewJob, Store

NOW = 1_800_000_000.0


def new_job(user: int = 1, price: int = 10) -> NewJob:
    return NewJob(user_id=user, model="kling", provider="simulated", request_json='{"prompt": "x"}', price=price,
                  interaction_token="enc")


async def test_request_keys_are_unique_and_intent_comes_first(store: Store) -> None:
    a, b = await store.jobs.create([new_job(), new_job()], now=NOW)
    await store.jobs.update(a.id, state=JobState.SUBMITTING, request_key="j1-abc", now=NOW)
    with pytest.raises(Exception):  # noqa: B017 - the engines raise different integrity errors
        await store.jobs.update(b.id, state=JobState.SUBMITTING, request_key="j1-abc", now=NOW)
    job = await store.jobs.get(a.id)
    assert job is not None and job.state is JobState.SUBMITTING and job.request_key == "j1-abc"


async def test_heartbeat_renews_reports_release_and_loss(store: Store) -> None:
    [job] = await store.jobs.create([new_job()], now=NOW)
    await store.jobs.claim_due("w1", lease_seconds=2, now=NOW)
    assert await store.jobs.renew_lease(job.id, "w1", lease_seconds=2, now=NOW + 1.5) == "held"
    assert await store.jobs.claim_due("w2", lease_seconds=2, now=NOW + 3) == []  # renewed to NOW + 3.5
    [taken] = await store.jobs.claim_due("w2", lease_seconds=2, now=NOW + 4)
    assert taken.lease_owner == "w2"
    assert await store.jobs.renew_lease(job.id, "w1", lease_seconds=2, now=NOW + 4) == "lost"
    with pytest.raises(LeaseLost):
        await store.jobs.hold_lease(job.id, "w1", lease_seconds=2, now=NOW + 4)
    await store.jobs.update(job.id, owner="w2", next_run_at=NOW + 10, release=True, now=NOW + 4)
    assert await store.jobs.renew_lease(job.id, "w2", lease_seconds=2, now=NOW + 5) == "released"


async def test_claim_skips_jobs_this_process_runs(store: Store) -> None:
    a, b = await store.jobs.create([new_job(), new_job()], now=NOW)
    claimed = await store.jobs.claim_due("w1", lease_seconds=1, now=NOW + 5, exclude=[a.id])
    assert [job.id for job in claimed] == [b.id]


async def test_acknowledge_records_once(store: Store) -> None:
    [job] = await store.jobs.create([new_job()], now=NOW)
    assert job.acked_at is None
    await store.jobs.acknowledge([job.id], now=NOW + 1)
    await store.jobs.acknowledge([job.id], now=NOW + 2)
    acked = await store.jobs.get(job.id)
    assert acked is not None and acked.acked_at == NOW + 1


async def test_ending_writes_one_outbox_row_in_the_same_transaction(store: Store) -> None:
    a, b = await store.jobs.create([new_job(), new_job()], now=NOW)
    await store.jobs.update(a.id, state=JobState.FAILED, error_code="transient", now=NOW)
    await store.jobs.update(b.id, state=JobState.CANCELED, notice=False, now=NOW)
    [row_a] = await store.jobs.outbox_for_job(a.id)
    [row_b] = await store.jobs.outbox_for_job(b.id)
    assert (row_a["kind"], row_a["dedup_key"], row_a["next_run_at"]) == ("ended", f"end{a.id}", NOW)
    assert row_b["kind"] == "card"
    assert await store.jobs.next_due_at() == NOW
    rows = await store.jobs.claim_outbox("w1", lease_seconds=30, now=NOW)
    assert sorted(row.job_id for row in rows) == [a.id, b.id]
    assert await store.jobs.claim_outbox("w2", lease_seconds=30, now=NOW + 1) == []  # leased
    first = next(row for row in rows if row.job_id == a.id)
    await store.jobs.outbox_route(first.id, "w1", "followup")
    with pytest.raises(LeaseLost):
        await store.jobs.outbox_route(first.id, "w2", "dm")
    await store.jobs.outbox_finish(first.id, "w1", error="503", retry_at=NOW + 5, now=NOW)
    [again] = await store.jobs.claim_outbox("w2", lease_seconds=30, now=NOW + 5)
    assert again.id == first.id and again.attempts == 1 and again.route == "followup"
    await store.jobs.outbox_finish(again.id, "w2", message_id=123, now=NOW + 5)
    [done] = await store.jobs.outbox_for_job(a.id)
    assert done["message_id"] == 123 and done["next_run_at"] is None and done["done_at"] == NOW + 5


@pytest.mark.parametrize(("charge", "kind", "balance"), [(0, LedgerKind.REFUND, 120), (4, LedgerKind.REFUND, 116),
                                                         (10, LedgerKind.CAPTURE, 110)])
async def test_cancel_charge_settles_once(store: Store, charge: int, kind: LedgerKind, balance: int) -> None:
    [job] = await store.jobs.create([new_job()], now=NOW)
    await store.jobs.update(job.id, state=JobState.CANCELED, charge=charge, notice=False, now=NOW)
    entries = await store.ledger.entries_for_job(job.id)
    assert [(e.kind, e.amount, e.idempotency_key) for e in entries][-1] == (kind, 10 - charge, f"settle:{job.id}")
    assert await store.ledger.balance(1, now=NOW) == balance
    assert (await store.ledger.audit())["unsettled_finished_jobs"] == 0


async def test_sqlite_upgrade_rebuilds_jobs_keeping_rows_links_and_indexes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The jobs table is rebuilt to admit `submitting`: rows, ledger links and earlier indexes survive."""
    import aiosqlite

    from storage.database import load_migrations

    path = tmp_path / "old.sqlite3"
    migrations = [(version, sql) for version, _, sql in load_migrations("sqlite")]
    rebuild = next(index for index, (_, sql) in enumerate(migrations) if "jobs_new" in sql)
    older = migrations[:rebuild]  # the schema before the rebuild; it and every later migration run on open
    async with aiosqlite.connect(path) as conn:
        await conn.executescript("\n".join(sql for _, sql in older) + f"\nPRAGMA user_version = {older[-1][0]};")
        await conn.execute("INSERT INTO users (id, balance, created_at) VALUES (1, 90, 1.0)")
        await conn.execute("INSERT INTO jobs (user_id, model, provider, request_json, price, state, created_at,"
                           " updated_at) VALUES (1, 'kling', 'simulated', '{}', 10, 'running', 5.0, 5.0)")
        await conn.execute("INSERT INTO ledger (user_id, kind, amount, job_id, idempotency_key, created_at)"
                           " VALUES (1, 'reserve', -10, 1, 'reserve:1', 5.0)")
        await conn.commit()
        before = {row[0] async for row in await conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL")}
    store = await Store.open(path)
    try:
        job = await store.jobs.get(1)
        assert job is not None and job.state is JobState.RUNNING and job.acked_at == 5.0
        await store.jobs.update(1, state=JobState.CANCELED, now=NOW)  # ledger link and outbox still work
        assert (await store.ledger.audit())["unsettled_finished_jobs"] == 0
        after = {row[0] for row in await store.db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' AND sql IS NOT NULL")}
        assert before <= after
    finally:
        await store.close()


async def test_restart_gives_back_outbox_leases_too(store: Store) -> None:
    """A worker restarting after a crash resumes its owed notices at once, not after the lease runs out."""
    [job] = await store.jobs.create([new_job()], now=NOW)
    await store.jobs.update(job.id, state=JobState.FAILED, now=NOW)
    [row] = await store.jobs.claim_outbox("w1", lease_seconds=300, now=NOW)
    assert await store.jobs.claim_outbox("w1", lease_seconds=300, now=NOW + 1) == []
    await store.jobs.release_all("w1")
    [again] = await store.jobs.claim_outbox("w1", lease_seconds=300, now=NOW + 1)
    assert again.id == row.id
