"""A Notifier that shows nothing, for drivers that only care when (or whether) a job was delivered."""

from __future__ import annotations

from typing import Any

from bot.runner import Delivered


class QuietNotifier:
    """Every Discord-side call of the runner answers "done, nothing to show"; subclasses record `deliver`."""

    async def deliver(self, job: Any, *, pair: Any = None) -> Delivered:
        return Delivered(job.id, 1)

    async def progress(self, job: Any, status: Any, *, pair: Any = None) -> bool:
        return False

    async def ended(self, job: Any, **route: Any) -> int | None:
        return None

    async def card(self, job: Any, *, pair: Any = None) -> None:
        return None

    async def retire(self, job: Any, *, pair: Any = None) -> None:
        return None

    async def confirm_ack(self, job: Any) -> int | None:
        return None
