"""Run every benchmark in turn: `python -m bench`."""

from __future__ import annotations

import asyncio

from bench import ack_latency, delivery_memory, inflight, polling, postgres_claims, scale, startup, transcode


def main() -> None:
    for module in (ack_latency, polling, inflight, scale, postgres_claims, delivery_memory, startup, transcode):
        asyncio.run(module.main())


if __name__ == "__main__":
    main()
