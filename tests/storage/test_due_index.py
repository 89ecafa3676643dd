"""`next_due_at` on both engines: the right answer, read off indexes rather than by scanning leased rows."""

from __future__ import annotations

from storage import NewJob, Store

NOW = 1_800_000_000.0


def new_job(user: int = 1) -> NewJob:
    return NewJob(user_id=user, model="sora", provider="simulated", request_json='{"prompt": "x"}', price=1)


async def test_next_due_takes_the_later_of_run_time_and_lease_expiry(store: Store) -> None:
    a, b = [job for user in (1, 2) for job in await store.jobs.create([new_job(user)], now=NOW)]
    await store.jobs.update(a.id, next_run_at=NOW + 50, now=NOW)
    await store.jobs.update(b.id, next_run_at=NOW + 10, now=NOW)
    [claimed] = await store.jobs.claim_due("w1", lease_seconds=30, limit=1, now=NOW + 10)  # b, lease to +40
    assert claimed.id == b.id
    assert await store.jobs.next_due_at() == NOW + 40  # b's lease expires before a's run time
    await store.jobs.update(b.id, owner="w1", next_run_at=NOW + 60, now=NOW + 10)  # still leased, to +40
    assert await store.jobs.next_due_at() == NOW + 50  # now a (free) is the soonest
    await store.jobs.update(a.id, next_run_at=None, now=NOW + 10)  # nothing to do for a
    assert await store.jobs.next_due_at() == NOW + 60  # leased b: its run time is after its lease expiry


async def test_every_part_of_next_due_is_index_backed(store: Store) -> None:
    """With 10,000 renders leased, a part that scans them costs milliseconds on every poller tick."""
    jobs = [job for user in range(40) for job in await store.jobs.create([new_job(user)], now=NOW)]
    await store.jobs.claim_due("w1", lease_seconds=30, limit=20, now=NOW)
    assert len(jobs) == 40
    for sql in store.jobs.due_queries():
        table = sql.split(" FROM ", 1)[1].split()[0]
        # An index on next_run_at alone (jobs_due) would walk past every leased row to find a free one.
        index = f"{table}_leased_due" if "lease_owner IS NOT NULL" in sql else f"{table}_free_due"
        if store.db.dialect == "sqlite":
            plan = " | ".join(str(row[3]) for row in await store.db.fetchall("EXPLAIN QUERY PLAN " + sql))
            assert f"USING INDEX {index}" in plan, (sql, plan)
            assert "TEMP B-TREE" not in plan, (sql, plan)
        else:
            async with store.db.transaction() as conn:
                # Tiny tables make a sequential scan cheapest; forbid it to see whether an index can serve.
                await conn.execute("SET LOCAL enable_seqscan = off")
                plan = " | ".join(str(row[0]) for row in await conn.fetchall("EXPLAIN " + sql))
            assert index in plan and "Seq Scan" not in plan and "Sort" not in plan, (sql, plan)
