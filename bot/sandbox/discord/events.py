"""What happened in the loopback world, for the console and for tests: subscribers, an ordered log, waiters."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class _Waiter:
    channel_id: int | None
    predicate: Predicate
    future: asyncio.Future[dict[str, Any]]


@dataclass
class Events:
    """Publishes each change to live subscribers (the console's event stream), keeps a deep-copied log (so a
    test sees a message as it was at each step) and wakes whoever waits for a matching message."""

    clock: Callable[[], float]
    log: list[Event] = field(default_factory=list)
    _subscribers: set[asyncio.Queue[Event]] = field(default_factory=set)
    _waiters: list[_Waiter] = field(default_factory=list)
    _listeners: list[Callable[[Event], None]] = field(default_factory=list)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    def listen(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` synchronously on every event (persistence marks the world dirty this way)."""
        self._listeners.append(listener)

    def publish(self, event: Event) -> None:
        self.log.append(copy.deepcopy(event) | {"at": self.clock()})
        for queue in list(self._subscribers):
            queue.put_nowait(event)
        for listener in self._listeners:
            listener(event)
        if event["type"] not in ("message_create", "message_update"):
            return
        message = event["message"]
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            if waiter.channel_id is not None and str(waiter.channel_id) != message["channel_id"]:
                continue
            with contextlib.suppress(Exception):  # a predicate that trips on this message simply does not match
                if waiter.predicate(message):
                    waiter.future.set_result(message)
                    self._waiters.remove(waiter)

    async def next_message(self, channel_id: int | None, predicate: Predicate, *, within: float) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(channel_id, predicate, future))
        async with asyncio.timeout(within):
            return await future

    def channel_log(self, channel_id: int) -> list[Event]:
        """What happened in a channel, in order: message_create / message_update / message_delete snapshots."""
        return [event for event in self.log if event.get("channel_id") == str(channel_id)
                and event["type"].startswith("message_")]
