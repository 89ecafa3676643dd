"""Shared fixtures: a real database per test, SQLite file or PostgreSQL database (both backends)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot import catalogue
from storage import CreditPolicy, Store
from tests.bot.providers.fakes import FakeProviders
from tests.pg import PostgresUnavailable, TempPostgres


@pytest.fixture(autouse=True)
def _shipped_catalogue() -> Iterator[None]:
    """A bot started with MODELS_FILE installs its catalogue process-wide: put the shipped one back."""
    yield
    catalogue.install(None)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str | None]:
    """One PostgreSQL for the whole run; None (tests skip with the reason) when it cannot start."""
    try:
        server = TempPostgres()
        url = server.start()
    except PostgresUnavailable as error:
        pytest.postgres_skip_reason = str(error)  # type: ignore[attr-defined]
        yield None
        return
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    """Loopback fakes of Replicate, OpenAI Videos and Kling (tests/bot/providers/fakes.py)."""
    server = FakeProviders()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture(params=["sqlite", "postgres"])
async def location(request: pytest.FixtureRequest, db_path: Path) -> AsyncIterator[str | Path]:
    """Where a test's database lives: a SQLite file, or a fresh database on the test PostgreSQL."""
    if request.param == "sqlite":
        yield db_path
        return
    base = request.getfixturevalue("postgres_server")
    if base is None:
        pytest.skip(getattr(pytest, "postgres_skip_reason", "PostgreSQL unavailable"))
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield base.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def store(location: str | Path) -> AsyncIterator[Store]:
    store = await Store.open(location, CreditPolicy(start_balance=100, daily_grant=20, max_concurrent_jobs=2))
    try:
        yield store
    finally:
        await store.close()
