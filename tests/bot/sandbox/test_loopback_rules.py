"""The loopback Discord's wire behaviour, driven with raw HTTP and websockets (no discord.py in between).

These pin the exact status codes, error codes, headers and gateway frames, so the e2e tests that go through
discord.py are known to exercise Discord's rules and not the fake's accidents.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.sandbox.discord import LoopbackDiscord
from bot.sandbox.discord.constants import NONCE_WINDOW
from tests.e2e.harness import FrozenClock

MiB = 1024 * 1024
COMMANDS = [
    {"name": "render", "type": 1, "description": "d", "options": [
        {"type": 3, "name": "prompt", "description": "d", "required": True},
        {"type": 4, "name": "duration", "description": "d"},
        {"type": 10, "name": "strength", "description": "d"},
        {"type": 5, "name": "hd", "description": "d"},
        {"type": 11, "name": "image", "description": "d"},
    ]},
    {"name": "credits", "type": 1, "description": "d", "options": [
        {"type": 2, "name": "admin", "description": "d", "options": [
            {"type": 1, "name": "grant", "description": "d", "options": [
                {"type": 4, "name": "amount", "description": "d", "required": True},
                {"type": 6, "name": "target", "description": "d", "required": True},
            ]},
        ]},
    ]},
]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def server(clock: FrozenClock) -> AsyncIterator[LoopbackDiscord]:
    loopback = LoopbackDiscord(clock=clock)
    await loopback.start()
    try:
        yield loopback
    finally:
        await loopback.stop()


@pytest.fixture
async def http(server: LoopbackDiscord) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{server.api_base}/applications/{server.app_id}/commands", json=COMMANDS) as answer:
            assert answer.status == 200
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


def callback_url(server: LoopbackDiscord, interaction: Any, with_response: bool = True) -> str:
    suffix = "?with_response=true" if with_response else ""
    return f"{server.api_base}/interactions/{interaction.id}/{interaction.token}/callback{suffix}"


def multipart(payload: dict[str, Any], files: list[tuple[str, bytes]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    for index, (name, data) in enumerate(files):
        form.add_field(f"files[{index}]", data, filename=name, content_type="application/octet-stream")
    return form


async def test_json_is_served_exactly_and_unknown_routes_use_the_error_envelope(server: LoopbackDiscord,
                                                                                http: aiohttp.ClientSession) -> None:
    """`Content-Type: application/json` with no charset (discord.py's login needs it), 404 in Discord's shape."""
    async with http.get(f"{server.api_base}/users/@me") as response:
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["id"] == str(server.app_id)
    status, body = await call(http, "GET", f"{server.api_base}/guilds/{server.guild}/bans")
    assert status == 404 and set(body) == {"message", "code"}
    status, body = await call(http, "GET", f"{server.api_base}/gateway/bot")
    assert status == 200 and body["url"].startswith(f"ws://127.0.0.1:{server.port}")


async def test_gateway_handshake_heartbeat_and_sequence(server: LoopbackDiscord, http: aiohttp.ClientSession) -> None:
    """HELLO, IDENTIFY -> READY (loopback resume URL) + GUILD_CREATE numbered 1, 2; heartbeat -> op 11."""
    async with http.ws_connect(f"{server.gateway_url}?v=10&encoding=json") as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
        await ws.send_json({"op": 2, "d": {"token": "t", "intents": 0, "properties": {}}})
        ready, guild = await ws.receive_json(), await ws.receive_json()
        assert (ready["t"], ready["s"], guild["t"], guild["s"]) == ("READY", 1, "GUILD_CREATE", 2)
        assert ready["d"]["resume_gateway_url"] == server.gateway_url
        assert ready["d"]["application"]["id"] == str(server.app_id)
        assert ready["d"]["guilds"] == [{"id": str(server.guild), "unavailable": True}]
        assert [c["name"] for c in guild["d"]["channels"]] == ["general"]
        assert str(server.app_id) in {m["user"]["id"] for m in guild["d"]["members"]}
        await ws.send_json({"op": 1, "d": 2})
        assert (await ws.receive_json())["op"] == 11


async def test_gateway_speaks_zlib_stream_when_asked(server: LoopbackDiscord, http: aiohttp.ClientSession) -> None:
    """compress=zlib-stream (what discord.py asks for): binary frames, one zlib context, each ending in Z_SYNC_FLUSH."""
    inflate = zlib.decompressobj()
    async with http.ws_connect(f"{server.gateway_url}?v=10&encoding=json&compress=zlib-stream") as ws:
        frames = []
        first = await ws.receive_bytes()
        frames.append(first)
        await ws.send_json({"op": 2, "d": {"token": "t", "intents": 0, "properties": {}}})
        frames.append(await ws.receive_bytes())
    assert all(frame.endswith(b"\x00\x00\xff\xff") for frame in frames)
    decoded = [json.loads(inflate.decompress(frame)) for frame in frames]
    assert [d["op"] for d in decoded] == [10, 0] and decoded[1]["t"] == "READY"


async def test_resume_replays_what_was_missed(server: LoopbackDiscord, http: aiohttp.ClientSession) -> None:
    """After a drop, RESUME with the last seq gets the missed dispatches in order, then RESUMED; unknown -> op 9."""
    async with http.ws_connect(server.gateway_url) as ws:
        await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"token": "t", "intents": 0, "properties": {}}})
        session_id = (await ws.receive_json())["d"]["session_id"]
        await ws.receive_json()  # GUILD_CREATE, seq 2
        await server.drop_connections()
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4000
    interaction = await server.invoke("/render", user=server.alice, channel=server.general,
                                      options={"prompt": "while away"})
    async with http.ws_connect(server.gateway_url) as ws:
        await ws.receive_json()
        await ws.send_json({"op": 6, "d": {"token": "t", "session_id": session_id, "seq": 2}})
        replayed, resumed = await ws.receive_json(), await ws.receive_json()
        assert (replayed["t"], replayed["s"], replayed["d"]["id"]) == ("INTERACTION_CREATE", 3, str(interaction.id))
        assert (resumed["t"], resumed["s"]) == ("RESUMED", 4)
    async with http.ws_connect(server.gateway_url) as ws:
        await ws.receive_json()
        await ws.send_json({"op": 6, "d": {"token": "t", "session_id": "forgotten", "seq": 9}})
        assert await ws.receive_json() == {"op": 9, "d": False, "s": None, "t": None}


async def test_interaction_payload_is_typed_from_the_registered_command(server: LoopbackDiscord,
                                                                        http: aiohttp.ClientSession) -> None:
    """Strings become ints/numbers/bools per the synced option types; groups nest; guild vs DM vs user install."""
    interaction = await server.invoke("/render", user=server.alice, channel=server.general,
                                      options={"prompt": "p", "duration": "5", "strength": "0.5", "hd": "false"},
                                      attachments={"image": ("a.png", b"png", "image/png")})
    payload = interaction.payload
    options = {o["name"]: o["value"] for o in payload["data"]["options"]}
    assert options["duration"] == 5 and options["strength"] == 0.5 and options["hd"] is False
    assert payload["data"]["resolved"]["attachments"][options["image"]]["size"] == 3
    assert payload["authorizing_integration_owners"] == {"0": str(server.guild)} and payload["context"] == 0
    assert payload["attachment_size_limit"] == 10 * MiB and payload["entitlements"] == []
    assert "member" in payload and "user" not in payload and int(payload["app_permissions"]) & (1 << 15)
    grant = await server.invoke("/credits admin grant", user=server.admin, channel=server.general,
                                options={"amount": 3, "target": server.bob})
    group = grant.payload["data"]["options"][0]
    assert (group["type"], group["options"][0]["type"]) == (2, 1)
    assert group["options"][0]["options"][1] == {"name": "target", "type": 6, "value": str(server.bob)}
    assert str(server.bob) in grant.payload["data"]["resolved"]["members"]
    dm = await server.invoke("/render", user=server.bob, channel=server.dm_channel(server.bob),
                             options={"prompt": "p"})
    assert dm.payload["context"] == 1 and dm.payload["authorizing_integration_owners"] == {"1": str(server.bob)}
    assert "user" in dm.payload and "member" not in dm.payload
    foreign = server.add_channel(server.add_guild("theirs", bot_member=False, premium_tier=3), "x")
    installed = await server.invoke("/render", user=server.alice, channel=foreign, options={"prompt": "p"})
    assert installed.payload["authorizing_integration_owners"] == {"1": str(server.alice)}
    assert installed.payload["attachment_size_limit"] == 100 * MiB
    with pytest.raises(KeyError):
        await server.invoke("/render", user=server.alice, channel=server.general, options={"duration": 5})
    with pytest.raises(KeyError):
        await server.invoke("/credits", user=server.alice, channel=server.general)


async def test_callback_rules(server: LoopbackDiscord, clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    """A rejected callback leaves the interaction open; then 200 with interaction+resource, 40060, late 10062."""
    interaction = await server.invoke("/render", user=server.alice, channel=server.general, options={"prompt": "p"})
    url = callback_url(server, interaction)
    status, body = await call(http, "POST", url, json={"type": 4, "data": {"content": "x" * 2001}})
    assert (status, body["code"], list(body["errors"])) == (400, 50035, ["content"])
    status, body = await call(http, "POST", url, json={"type": 7, "data": {"content": "no message to update"}})
    assert (status, body["code"]) == (400, 50035)
    status, body = await call(http, "POST", url, json={"type": 4, "data": {"content": "x" * 2000}})
    assert status == 200 and body["interaction"]["id"] == str(interaction.id)
    assert body["resource"]["type"] == 4 and body["resource"]["message"]["content"] == "x" * 2000
    status, body = await call(http, "POST", url, json={"type": 4, "data": {"content": "again"}})
    assert (status, body["code"]) == (400, 40060)
    quiet = await server.invoke("/render", user=server.alice, channel=server.general, options={"prompt": "p"})
    status, body = await call(http, "POST", callback_url(server, quiet, with_response=False), json={"type": 5})
    assert (status, body) == (204, None)
    late = await server.invoke("/render", user=server.alice, channel=server.general, options={"prompt": "p"})
    clock.advance(3.01)
    status, body = await call(http, "POST", callback_url(server, late), json={"type": 5})
    assert (status, body) == (404, {"message": "Unknown interaction", "code": 10062})


async def test_token_lives_fifteen_minutes(server: LoopbackDiscord, clock: FrozenClock,
                                           http: aiohttp.ClientSession) -> None:
    """Followups and @original edits work for 15 min after creation, then 401/50027."""
    interaction = await server.invoke("/render", user=server.alice, channel=server.general, options={"prompt": "p"})
    webhook = f"{server.api_base}/webhooks/{server.app_id}/{interaction.token}"
    status, body = await call(http, "POST", f"{webhook}?wait=true", json={"content": "too early"})
    assert (status, body["code"]) == (404, 10015)
    assert (await call(http, "POST", callback_url(server, interaction), json={"type": 5}))[0] == 200
    clock.advance(14 * 60)
    status, body = await call(http, "PATCH", f"{webhook}/messages/@original", json={"content": "done"})
    assert status == 200 and body["content"] == "done" and not body["flags"] & 128
    status, followup = await call(http, "POST", f"{webhook}?wait=true", json={"content": "one more"})
    assert status == 200 and interaction.followups == [int(followup["id"])]
    clock.advance(60 + 1)
    for method, url in (("POST", f"{webhook}?wait=true"), ("PATCH", f"{webhook}/messages/@original")):
        status, body = await call(http, method, url, json={"content": "after 15 min"})
        assert (status, body) == (401, {"message": "Invalid Webhook Token", "code": 50027})


@pytest.mark.parametrize(("message", "field"), [
    ({"embeds": [{"title": "t"}] * 11}, "embeds"),
    ({"embeds": [{"title": "x" * 257}]}, "embeds.0.title"),
    ({"embeds": [{"description": "x" * 4097}]}, "embeds.0.description"),
    ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, "embeds.0.fields"),
    ({"embeds": [{"description": "x" * 4096}, {"description": "y" * 2000}]}, "embeds"),
    ({"content": "c", "components": [{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "l", "custom_id": "x" * 101}]}]}, "components"),
    ({"content": "c", "components": [{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "a", "custom_id": "same"},
        {"type": 2, "style": 1, "label": "b", "custom_id": "same"}]}]}, "components"),
    ({"flags": 1 << 15, "components": [{"type": 17, "components": [{"type": 9, "components": [
        {"type": 10, "content": "t"}], "accessory": {"type": 2, "style": 1, "custom_id": "x" * 101}}]}]},
     "components"),
    ({"flags": 1 << 15, "content": "not allowed with V2", "components": [{"type": 10, "content": "t"}]}, "content"),
    ({"flags": 1 << 15, "components": [{"type": 10, "content": "t"}] * 41}, "components"),
    ({"nonce": "n" * 26, "content": "c"}, "nonce"),
])
async def test_form_limits(server: LoopbackDiscord, http: aiohttp.ClientSession, message: dict[str, Any],
                           field: str) -> None:
    """Content, embed, component and nonce limits answer 400/50035 naming the field, and create nothing."""
    status, body = await call(http, "POST", f"{server.api_base}/channels/{server.general}/messages", json=message)
    assert (status, body["code"]) == (400, 50035) and field in body["errors"]
    assert server.messages[server.general] == []


async def test_uploads_are_limited_per_file_and_served_back(server: LoopbackDiscord,
                                                            http: aiohttp.ClientSession) -> None:
    """Over the tier limit is 413/40005; more than 10 files is 50035; stored bytes come back from the URL."""
    url = f"{server.api_base}/channels/{server.general}/messages"
    status, body = await call(http, "POST", url, data=multipart({"content": "big"}, [("a.bin", b"0" * (10 * MiB + 1))]))
    assert (status, body) == (413, {"message": "Request entity too large", "code": 40005})
    status, body = await call(http, "POST", url, data=multipart({}, [(f"{n}.txt", b"x") for n in range(11)]))
    assert (status, body["code"]) == (400, 50035)
    payload = {"content": "clip", "attachments": [{"id": 0, "filename": "clip.mp4", "description": "a clip"}]}
    status, body = await call(http, "POST", url, data=multipart(payload, [("clip.mp4", b"\x00mp4 bytes")]))
    assert status == 200
    attachment = body["attachments"][0]
    assert (attachment["filename"], attachment["size"], attachment["content_type"], attachment["description"]) == \
        ("clip.mp4", 10, "video/mp4", "a clip")
    async with http.get(attachment["url"]) as response:
        assert await response.read() == b"\x00mp4 bytes" and response.content_type == "video/mp4"
    assert server.upload_limit(server.add_guild("boosted", premium_tier=2)) == 50 * MiB


async def test_nonce_deduplication(server: LoopbackDiscord, clock: FrozenClock, http: aiohttp.ClientSession) -> None:
    """enforce_nonce returns the earlier message within the window; without it, or after it, a new one."""
    url = f"{server.api_base}/channels/{server.general}/messages"
    _, first = await call(http, "POST", url, json={"content": "a", "nonce": "job1", "enforce_nonce": True})
    _, again = await call(http, "POST", url, json={"content": "b", "nonce": "job1", "enforce_nonce": True})
    _, loose = await call(http, "POST", url, json={"content": "c", "nonce": "job1"})
    clock.advance(NONCE_WINDOW + 1)
    _, later = await call(http, "POST", url, json={"content": "d", "nonce": "job1", "enforce_nonce": True})
    assert first["id"] == again["id"] and again["content"] == "a"
    assert len({first["id"], loose["id"], later["id"]}) == 3


async def test_access_and_permission_errors(server: LoopbackDiscord, http: aiohttp.ClientSession) -> None:
    """50001 where the bot is not, 50013 without Send/Attach, 50007 for closed DMs, 50006 empty, 50005 not ours."""
    api = server.api_base
    foreign = server.add_channel(server.add_guild("theirs", bot_member=False), "x")
    muted = server.add_channel(server.guild, "muted", bot_can_send=False)
    no_files = server.add_channel(server.guild, "no-files", bot_can_attach=False)
    group = server.add_group_dm("friends", [server.alice, server.bob])
    hermit = server.add_user("hermit", dms_closed=True)
    _, dm = await call(http, "POST", f"{api}/users/@me/channels", json={"recipient_id": str(hermit)})
    cases = [
        (foreign, {"content": "hi"}, None, 403, 50001),
        (group, {"content": "hi"}, None, 403, 50001),
        (muted, {"content": "hi"}, None, 403, 50013),
        (no_files, {"content": "hi"}, [("a.txt", b"a")], 403, 50013),
        (int(dm["id"]), {"content": "hi"}, None, 403, 50007),
        (server.general, {"content": ""}, None, 400, 50006),
    ]
    for channel, body, files, status, code in cases:
        kwargs: dict[str, Any] = {"data": multipart(body, files)} if files else {"json": body}
        answer = await call(http, "POST", f"{api}/channels/{channel}/messages", **kwargs)
        assert (answer[0], answer[1]["code"]) == (status, code), (channel, body)
    assert (await call(http, "POST", f"{api}/channels/{no_files}/messages", json={"content": "text is fine"}))[0] == 200
    server.messages[server.general].append({"id": "1", "channel_id": str(server.general), "author":
                                            server.users[server.alice], "content": "alice wrote this", "flags": 0})
    status, body = await call(http, "PATCH", f"{api}/channels/{server.general}/messages/1", json={"content": "x"})
    assert (status, body["code"]) == (403, 50005)


async def test_fault_injection(server: LoopbackDiscord, http: aiohttp.ClientSession) -> None:
    """A 429 carries Via, Retry-After, X-RateLimit-* and Discord's body, `times` times; then 5xx on demand."""
    url = f"{server.api_base}/channels/{server.general}/messages"
    server.inject(r"/channels/\d+/messages$", status=429, times=1, retry_after=1.5, method="POST")
    async with http.post(url, json={"content": "x"}) as response:
        assert response.status == 429 and "Via" in response.headers
        assert response.headers["Retry-After"] == "2" and response.headers["X-RateLimit-Reset-After"] == "1.5"
        assert response.headers["X-RateLimit-Remaining"] == "0" and response.headers["X-RateLimit-Bucket"]
        assert await response.json() == {"message": "You are being rate limited.", "retry_after": 1.5,
                                         "global": False}
    assert (await call(http, "POST", url, json={"content": "x"}))[0] == 200
    server.inject(r"/channels/\d+/messages$", status=503, times=2)
    assert [(await call(http, "POST", url, json={"content": "y"}))[0] for _ in range(3)] == [503, 503, 200]


async def test_subscribers_and_channel_log_see_creates_edits_and_deletes(server: LoopbackDiscord,
                                                                         http: aiohttp.ClientSession) -> None:
    """The console's live stream and the ordered per-channel log, with snapshots of each version."""
    queue = server.subscribe()
    url = f"{server.api_base}/channels/{server.general}/messages"
    _, message = await call(http, "POST", url, json={"content": "v1"})
    await call(http, "PATCH", f"{url}/{message['id']}", json={"content": "v2"})
    status, _ = await call(http, "DELETE", f"{url}/{message['id']}")
    assert status == 204 and server.messages[server.general] == []
    streamed = [queue.get_nowait()["type"] for _ in range(queue.qsize())]
    assert streamed == ["message_create", "message_update", "message_delete"]
    log = server.channel_log(server.general)
    assert [e.get("message", {}).get("content") for e in log] == ["v1", "v2", None]
    server.unsubscribe(queue)
    recorded = [(r.method, r.body) for r in server.requests if r.path.startswith(f"/channels/{server.general}")]
    assert recorded[0] == ("POST", {"content": "v1"})
