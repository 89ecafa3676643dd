"""Delivery memory: a 100 MiB video (over the limit: link) and a 24 MiB one (attached in a tier-2
guild) go through the real bot process; its peak RSS growth must stay under 10 MiB because the
video is streamed to disk and from disk. Baseline: the naive way (whole body in memory), in a
process of its own.

Each row runs in a fresh bot process: the peak (VmHWM) never goes down, so a second row measured
in the same process would hide under the first row's peak.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap

from aiohttp import web

from bench.common import LoopbackService, bench_bot, rss_kib, table
from bot.sandbox.discord import LoopbackDiscord

MiB = 1024 * 1024
CHUNK = b"\x00" * (256 * 1024)


class BigVideos(LoopbackService):
    """A Replicate look-alike whose outputs are large streamed files."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[str, int] = {}
        self.polls: dict[str, int] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/models/{owner}/{name}/predictions", self.create),
                web.get("/v1/predictions/{id}", self.get), web.get("/files/{id}.mp4", self.file)]

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        pid = f"p{len(self.sizes)}"
        self.sizes[pid] = int(body["input"]["prompt"].split()[0]) * MiB
        self.polls[pid] = 0
        return web.json_response({"id": pid, "status": "starting"}, status=201)

    async def get(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response({"id": pid, "status": "succeeded",
                                  "output": f"http://127.0.0.1:{self.port}/files/{pid}.mp4"})

    async def file(self, request: web.Request) -> web.StreamResponse:
        size = self.sizes[request.match_info["id"]]
        response = web.StreamResponse(headers={"Content-Type": "video/mp4", "Content-Length": str(size)})
        await response.prepare(request)
        for _ in range(size // len(CHUNK)):
            await response.write(CHUNK)
        return response


NAIVE = textwrap.dedent("""
    import sys, httpx
    def hwm():
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    before = hwm()
    data = httpx.get(sys.argv[1], timeout=120).content   # download whole
    upload = bytes(data)                                 # and hand the bytes to the upload
    print((hwm() - before) // 1024)
""")


async def naive_growth(url: str) -> int:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", NAIVE, url, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return int(out.decode().strip())


async def main() -> None:
    videos = BigVideos()
    await videos.start()
    server = LoopbackDiscord()
    server.guilds[server.guild].premium_tier = 2  # 50 MiB uploads
    await server.start()
    rows = []
    try:
        for size, path in ((100, "link (over 50 MiB)"), (24, "attachment")):
            bot = bench_bot(server, KLING_PROVIDER="replicate", REPLICATE_API_TOKEN="r8_bench",
                            REPLICATE_API_BASE=f"http://127.0.0.1:{videos.port}", POLL_TIME_SCALE="0.0001",
                            PUBLIC_BASE_URL="http://127.0.0.1:9/bench", WEB_PORT="0")
            await bot.start()
            try:
                # A channel per row: each fresh bot numbers its job #1, and Discord's nonce de-duplication
                # would fold a second "#1 is ready" into the first row's message.
                channel = server.add_channel(server.guild, f"row-{size}")
                before = rss_kib(bot.pid, "VmHWM")
                await server.invoke("/kling", user=server.alice, channel=channel,
                                    options={"prompt": f"{size} MiB video"})
                message = await server.wait_for_message(channel, lambda m: "is ready" in m["content"], within=300)
                growth = (rss_kib(bot.pid, "VmHWM") - before) / 1024
            finally:
                await bot.stop()
            attached = sum(a["size"] for a in message["attachments"]) // MiB
            naive = await naive_growth(f"http://127.0.0.1:{videos.port}/files/p{len(rows)}.mp4")
            rows.append([f"{size} MiB", path, f"{attached} MiB", f"{growth:.1f}", str(naive),
                         f"{growth / max(naive, 1):.2f}x"])
    finally:
        await server.stop()
        await videos.stop()
    table("Delivery memory: peak RSS growth of the bot process (MiB)",
          ["video", "delivered as", "attached", "ours", "naive (in memory)", "ratio"], rows)


if __name__ == "__main__":
    asyncio.run(main())
