"""Loopback fakes of Replicate, OpenAI Videos and Kling, written from PROVIDERS.md.

One aiohttp server on 127.0.0.1 hosts the three APIs under their own prefixes (/replicate,
/openai/v1, /kling) so a test needs one fixture and one port; each prefix is a separate fake
with its own auth and wire format. Every request is recorded (method, path, headers, JSON body or
multipart fields and files).

The fakes validate what the real services validate (types included: Replicate wants integer
durations, OpenAI string seconds from its enum, Kling string durations), so an adapter sending
the wrong type fails a test instead of passing silently.

Misbehaviour on demand (`fail`): a status with a body and headers (429 + Retry-After, 5xx bursts
via `times`, provider error codes), a hung connection (`hang` > the client timeout), a garbage
non-JSON body, or a connection reset. With `after=True` the request is first really handled (a
create makes its task) and only then is the answer held, replaced or the connection reset: the
provider accepted the job but the bot never read the answer.

Recovery endpoints, as the real services have them: Replicate's `GET /v1/predictions` (newest
first, pages with a `next` cursor, items without `input`; `GET /v1/predictions/{id}` has it),
OpenAI's `GET /videos` (newest first, `limit`/`after`/`has_more`), Kling's query by
`external_task_id`. Prompts steer outcomes: "flagged" fails moderation,
"weird-status" reports an unknown status, "no-output" succeeds without a URL, "expire" makes the
output URL 404. `/files/big.mp4?bytes=N` streams N bytes in chunks (no Content-Length unless
`declare=1`).

Lifecycle of a task, per status poll: poll 1 -> queued, polls 2..steps -> running, then the
outcome (with the default `steps = 2`: queued, running, succeeded).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiohttp import web
from PIL import Image


def _provider_mp4() -> bytes:
    """A real, tiny H.264 MP4 with its `moov` box at the end, as some providers write them (the bot
    must remux it to fast start before posting; the e2e suite checks every posted MP4)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"preset": "ultrafast", "threads": "1"}
        for index in range(4):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 64), (60 * index, 90, 200)))
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


VIDEO_BYTES = _provider_mp4()
REPLICATE_TOKEN = "r8_testtoken1234567890"
OPENAI_KEY = "sk-operator-0123456789abcdef"
KLING_ACCESS = "kling-access-key"
KLING_SECRET = "kling-secret-key-0123456789abcdef"  # Kling issues 32-character keys
# Each Replicate model's input schema: the fields it takes and its durations. Anything else is
# refused with 422, as the strictest schema validation would (sources: PROVIDERS.md and the
# comments of bot/models.toml). Kling schemas "ignore aspect_ratio when start_image is given": the
# fake refuses the pair, so an adapter that sends a field to be ignored fails a test.
_KLING_BASE = {"prompt", "negative_prompt", "aspect_ratio", "start_image", "duration"}
REPLICATE_SCHEMAS: dict[str, tuple[frozenset[str], tuple[int, ...]]] = {
    "kwaivgi/kling-v2.0": (frozenset(_KLING_BASE | {"cfg_scale"}), (5, 10)),
    "kwaivgi/kling-v2.5-turbo-pro": (frozenset(_KLING_BASE), (5, 10)),
    "kwaivgi/kling-v2.6": (frozenset(_KLING_BASE | {"generate_audio"}), (5, 10)),
    "kwaivgi/kling-v3-video": (frozenset(_KLING_BASE | {"end_image", "mode", "generate_audio", "multi_prompt"}),
                               tuple(range(3, 16))),
    "openai/sora-2": (frozenset({"prompt", "seconds", "aspect_ratio", "input_reference", "openai_api_key"}),
                      (4, 8, 12)),
    "openai/sora-2-pro": (frozenset({"prompt", "seconds", "aspect_ratio", "input_reference", "openai_api_key",
                                     "resolution"}), (4, 8, 12)),
}
REPLICATE_MODELS = set(REPLICATE_SCHEMAS)
OPENAI_SIZES = {"720x1280", "1280x720", "1024x1792", "1792x1024"}
OPENAI_FIELDS = {"prompt", "model", "seconds", "size", "input_reference"}
OPENAI_MODEL_SIZES = {"sora-2": {"720x1280", "1280x720"}, "sora-2-pro": OPENAI_SIZES}
# Kling's official endpoints: image2video has no aspect_ratio (the image sets the shape);
# `sound` exists on v2.6+ only; cfg_scale on v1 models only; kling-v3 takes 3-15 s.
KLING_FIELDS = {
    "text2video": {"model_name", "prompt", "negative_prompt", "cfg_scale", "mode", "aspect_ratio", "duration",
                   "callback_url", "external_task_id", "sound", "camera_control"},
    "image2video": {"model_name", "prompt", "negative_prompt", "cfg_scale", "mode", "duration", "image",
                    "image_tail", "callback_url", "external_task_id", "sound", "static_mask", "dynamic_masks"},
}
KLING_SOUND_MODELS = {"kling-v2-6", "kling-v3"}
KLING_DURATIONS = {"kling-v3": tuple(str(n) for n in range(3, 16))}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, Any] = field(default_factory=dict)


SEEN = web.RequestKey("seen", Seen)


@dataclass
class Fault:
    pattern: re.Pattern[str]
    times: int
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    garbage: bool = False
    reset: bool = False
    method: str | None = None
    after: bool = False
    skip: int = 0


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


class FakeProviders:
    """All three fake APIs on one loopback port."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.openai_retired = False
        self.kling_live_models = {"kling-v2-master", "kling-v1-6", "kling-v2-5-turbo", "kling-v2-6", "kling-v3"}
        self.steps = 2  # status polls before a task finishes
        self.openai_poll_after_ms = 100  # the hint header on OpenAI video polls (small: e2e runs on a fast clock)
        self.page_size = 100  # list endpoints' page size (a test makes it small to exercise paging)
        # Replicate's list items carry neither `logs` nor `error` in what PROVIDERS.md confirms; a test sets
        # this to play a service whose items do (the sweep then reads progress and failures from them).
        self.replicate_list_detail = False
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._ids = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=50 * 1024 * 1024)
        r = app.router
        r.add_post("/replicate/v1/models/{owner}/{name}/predictions", self.replicate_create)
        r.add_get("/replicate/v1/predictions", self.replicate_list)
        r.add_get("/replicate/v1/predictions/{id}", self.replicate_get)
        r.add_post("/replicate/v1/predictions/{id}/cancel", self.replicate_cancel)
        r.add_post("/openai/v1/videos", self.openai_create)
        r.add_get("/openai/v1/videos", self.openai_list)
        r.add_get("/openai/v1/videos/{id}", self.openai_get)
        r.add_get("/openai/v1/videos/{id}/content", self.openai_content)
        r.add_delete("/openai/v1/videos/{id}", self.openai_delete)
        r.add_get("/openai/v1/models", self.openai_models)
        r.add_post("/kling/v1/videos/{kind}", self.kling_create)
        r.add_get("/kling/v1/videos/{kind}/{id}", self.kling_get)
        r.add_get("/files/big.mp4", self.big_file)
        r.add_get("/files/{name}", self.file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def fail(self, path: str, *, times: int = 1, status: int = 500, body: Any = None,
             headers: dict[str, str] | None = None, hang: float = 0.0, garbage: bool = False,
             reset: bool = False, method: str | None = None, after: bool = False, skip: int = 0) -> None:
        """Make the next `times` requests whose path matches `path` (a regex) misbehave (`after`: once handled;
        `skip`: only after letting that many matching requests through, e.g. to fail a list's second page)."""
        self.faults.append(Fault(re.compile(path), times, status, body, headers or {}, hang, garbage, reset, method,
                                 after, skip))

    def live_tasks(self, kind: str | None = None) -> list[str]:
        """Task ids not canceled (a duplicate render costs money only while it runs)."""
        return [tid for tid, t in self.tasks.items() if not t.get("canceled") and kind in (None, t["kind"])]

    def requests_to(self, pattern: str, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if re.search(pattern, s.path) and (method is None or s.method == method)]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        seen = Seen(request.method, request.path_qs, dict(request.headers))
        if request.content_type == "application/json":
            raw = await request.text()
            seen.json = json.loads(raw) if raw else None
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                data = await part.read()  # type: ignore[union-attr]
                if part.filename:  # type: ignore[union-attr]
                    seen.form[part.name] = {"filename": part.filename, "bytes": bytes(data),  # type: ignore[union-attr]
                                            "content_type": part.headers.get("Content-Type")}
                else:
                    seen.form[part.name] = data.decode()  # type: ignore[union-attr]
        self.seen.append(seen)
        request[SEEN] = seen
        held = None
        for fault in self.faults:
            if fault.times > 0 and fault.pattern.search(request.path) and fault.method in (None, request.method):
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.times -= 1
                if fault.after:
                    held = fault
                    break
                return await self._misbehave(request, fault)
        answer = await handler(request)
        if held is not None:
            return await self._misbehave(request, held)
        return answer

    async def _misbehave(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.hang:
            await asyncio.sleep(fault.hang)
        if fault.reset:
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError  # never reaches the client: the socket is gone
        if fault.garbage:
            return web.Response(text="<html>502 Bad Gateway</html>", status=fault.status, content_type="text/html")
        return web.json_response(fault.body if fault.body is not None else {"detail": "fault"},
                                 status=fault.status, headers=fault.headers)

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids:06d}"

    def _phase(self, task: dict[str, Any]) -> str:
        """queued | running | done, after counting this poll."""
        task["polls"] += 1
        if task["polls"] > self.steps:
            return "done"
        return "queued" if task["polls"] <= 1 else "running"

    async def file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        task = self.tasks.get(name.removesuffix(".mp4"))
        if task is None or "expire" in task["prompt"]:
            return web.json_response({"detail": "gone"}, status=404)
        return web.Response(body=VIDEO_BYTES, content_type="video/mp4")

    async def big_file(self, request: web.Request) -> web.StreamResponse:
        """A body streamed in 64 KiB chunks, larger than any cap a test sets."""
        total = int(request.query.get("bytes", str(4 * 1024 * 1024)))
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        if request.query.get("declare"):
            response.content_length = total
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"\x42" * 65536
        sent = 0
        try:
            while sent < total:
                piece = chunk[: min(len(chunk), total - sent)]
                await response.write(piece)
                sent += len(piece)
        except (ConnectionResetError, ConnectionError):
            return response  # the client stopped reading at its cap
        await response.write_eof()
        return response

    # -- Replicate -----------------------------------------------------------------------------

    def _replicate_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {REPLICATE_TOKEN}":
            return web.json_response({"detail": "Invalid token."}, status=401)
        return None

    @staticmethod
    def _replicate_invalid(model: str, data: dict[str, Any]) -> str | None:
        """What Replicate's schema validation would refuse (types matter: durations are integers)."""
        fields, durations = REPLICATE_SCHEMAS[model]
        unknown = sorted(set(data) - fields)
        if unknown:
            return f"input.{unknown[0]}: Additional property {unknown[0]} is not allowed"
        if not isinstance(data.get("prompt"), str):
            return "prompt is required"
        if model.startswith("kwaivgi/"):
            if type(data.get("duration")) is not int or data["duration"] not in durations:
                return f"input.duration: must be one of the following: {', '.join(map(str, durations))}"
            if "start_image" in data and "aspect_ratio" in data:
                return "input.aspect_ratio: ignored when start_image is provided; do not send both"
            if "aspect_ratio" in data and data["aspect_ratio"] not in ("16:9", "9:16", "1:1"):
                return "input.aspect_ratio: must be one of 16:9, 9:16, 1:1"
            if not isinstance(data.get("cfg_scale", 0.5), int | float) or not 0 <= data.get("cfg_scale", 0.5) <= 1:
                return "input.cfg_scale: must be between 0 and 1"
            if "generate_audio" in data and type(data["generate_audio"]) is not bool:
                return "input.generate_audio: must be a boolean"
        else:
            if type(data.get("seconds")) is not int or data["seconds"] not in durations:
                return "input.seconds: must be one of the following: 4, 8, 12"
            if data.get("aspect_ratio") not in ("portrait", "landscape"):
                return "input.aspect_ratio: must be one of portrait, landscape"
            if "resolution" in data and data["resolution"] not in ("standard", "high"):
                return "input.resolution: must be one of standard, high"
        return None

    async def replicate_create(self, request: web.Request) -> web.Response:
        if (denied := self._replicate_auth(request)) is not None:
            return denied
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model not in REPLICATE_MODELS:
            return web.json_response({"detail": "Not found."}, status=404)
        body = request[SEEN].json
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return web.json_response({"detail": "input is required"}, status=422)
        if (problem := self._replicate_invalid(model, body["input"])) is not None:
            return web.json_response({"detail": problem}, status=422)
        pid = self._new_id("rp")
        self.tasks[pid] = {"kind": "replicate", "model": model, "prompt": body["input"]["prompt"], "polls": 0,
                           "canceled": False, "status": "starting", "output": None, "error": None,
                           "input": body["input"], "webhook": body.get("webhook"), "created": time.time()}
        return web.json_response(self._prediction(pid), status=201)

    def _prediction(self, pid: str, *, full: bool = True) -> dict[str, Any]:
        task = self.tasks[pid]
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(task["created"])) + \
            f".{int(task['created'] % 1 * 1e6):06d}Z"
        item = {"id": pid, "model": task["model"], "status": task["status"], "created_at": created,
                "source": "api", "urls": {"get": f"{self.base}/replicate/v1/predictions/{pid}",
                                          "cancel": f"{self.base}/replicate/v1/predictions/{pid}/cancel"}}
        logs = f"frame {task['polls']}/3 {min(99, task['polls'] * 40)}%|"
        if full:
            item.update({"input": task["input"], "webhook": task["webhook"], "output": task["output"],
                         "error": task["error"], "logs": logs})
        elif self.replicate_list_detail:
            item.update({"error": task["error"], "logs": logs})
        return item

    async def replicate_list(self, request: web.Request) -> web.Response:
        """Newest first, `page_size` a page, a `next` cursor; items without `input` (as is not confirmed).

        Each item's `status` is what its own endpoint last reported (a task moves on when it is polled)."""
        if (denied := self._replicate_auth(request)) is not None:
            return denied
        ids = sorted((tid for tid, t in self.tasks.items() if t["kind"] == "replicate"),
                     key=lambda tid: self.tasks[tid]["created"], reverse=True)
        start = int(request.query.get("cursor", "0"))
        page = ids[start:start + self.page_size]
        more = start + self.page_size < len(ids)
        next_url = f"{self.base}/replicate/v1/predictions?cursor={start + self.page_size}" if more else None
        return web.json_response({"next": next_url, "previous": None,
                                  "results": [self._prediction(pid, full=False) for pid in page]})

    async def replicate_get(self, request: web.Request) -> web.Response:
        if (denied := self._replicate_auth(request)) is not None:
            return denied
        pid = request.match_info["id"]
        if pid not in self.tasks:
            return web.json_response({"detail": "Not found."}, status=404)
        task = self.tasks[pid]
        if not task["canceled"]:
            phase = self._phase(task)
            prompt = task["prompt"]
            if phase == "queued":
                task["status"] = "starting"
            elif phase == "running":
                task["status"] = "processing"
            elif "flagged" in prompt:
                task["status"], task["error"] = "failed", "Prediction failed: content flagged by the safety checker"
            elif "weird-status" in prompt:
                task["status"] = "pondering"
            else:
                task["status"] = "succeeded"
                task["output"] = None if "no-output" in prompt else f"{self.base}/files/{pid}.mp4"
        return web.json_response(self._prediction(pid))

    async def replicate_cancel(self, request: web.Request) -> web.Response:
        if (denied := self._replicate_auth(request)) is not None:
            return denied
        pid = request.match_info["id"]
        if pid not in self.tasks:
            return web.json_response({"detail": "Not found."}, status=404)
        self.tasks[pid]["canceled"] = True
        self.tasks[pid]["status"] = "canceled"
        return web.json_response(self._prediction(pid))

    # -- OpenAI --------------------------------------------------------------------------------

    @staticmethod
    def _openai_error(status: int, message: str, code: str | None, param: str | None = None) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                            "code": code}}, status=status)

    def _openai_auth(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk-"):
            return self._openai_error(401, "Incorrect API key provided", "invalid_api_key")
        return None

    def _openai_invalid(self, fields: dict[str, Any]) -> web.Response | None:
        """The spec's enums, with types: `seconds` is a string, `size` one of four strings."""
        unknown = sorted(set(fields) - OPENAI_FIELDS)
        if unknown:
            return self._openai_error(400, f"Unknown parameter: '{unknown[0]}'.", "unknown_parameter", unknown[0])
        if not isinstance(fields.get("prompt"), str) or not fields["prompt"]:
            return self._openai_error(400, "prompt is required", "invalid_value", "prompt")
        if fields.get("model") not in OPENAI_MODEL_SIZES:
            return self._openai_error(400, "invalid model", "invalid_value", "model")
        if not isinstance(fields.get("seconds"), str) or fields["seconds"] not in ("4", "8", "12"):
            return self._openai_error(400, "Invalid value for 'seconds': expected one of '4', '8', '12'",
                                      "invalid_value", "seconds")
        if fields.get("size") not in OPENAI_MODEL_SIZES[fields["model"]]:
            return self._openai_error(400, "Invalid value for 'size'", "invalid_value", "size")
        reference = fields.get("input_reference")
        if reference is not None:
            width, height = (int(x) for x in fields["size"].split("x"))
            if not isinstance(reference, dict) or image_size(reference["bytes"]) != (width, height):
                return self._openai_error(400, "Inpaint image must match the requested width and height",
                                          "invalid_value", "input_reference")
        return None

    async def openai_create(self, request: web.Request) -> web.Response:
        if (denied := self._openai_auth(request)) is not None:
            return denied
        seen: Seen = request[SEEN]
        fields = seen.json if seen.json is not None else seen.form
        if self.openai_retired:
            return self._openai_error(404, f"The model `{fields.get('model')}` does not exist", "model_not_found",
                                      "model")
        if (invalid := self._openai_invalid(fields)) is not None:
            return invalid
        if "flagged" in fields["prompt"] and "late" not in fields["prompt"]:
            return self._openai_error(400, "Your request was blocked by our moderation system.",
                                      "moderation_blocked", "prompt")
        vid = self._new_id("video_")
        self.tasks[vid] = {"kind": "openai", "prompt": fields["prompt"], "polls": 0, "model": fields["model"],
                           "seconds": fields["seconds"], "size": fields["size"], "status": "queued", "progress": 0,
                           "error": None, "created": time.time()}
        return web.json_response(self._video(vid))

    def _video(self, vid: str) -> dict[str, Any]:
        task = self.tasks[vid]
        return {"id": vid, "object": "video", "model": task["model"], "status": task["status"],
                "progress": task["progress"], "created_at": int(task["created"]), "completed_at": None,
                "expires_at": None, "prompt": task["prompt"], "size": task["size"], "seconds": task["seconds"],
                "error": task["error"], "remixed_from_video_id": None}

    async def openai_list(self, request: web.Request) -> web.Response:
        """`GET /videos`: newest first (or `order=asc`), `limit` ≤ 100, `after` = the last id of the previous page."""
        if (denied := self._openai_auth(request)) is not None:
            return denied
        limit = min(int(request.query.get("limit", "20")), 100, self.page_size)
        ids = sorted((tid for tid, t in self.tasks.items() if t["kind"] == "openai"),
                     key=lambda tid: (self.tasks[tid]["created"], tid), reverse=request.query.get("order") != "asc")
        after = request.query.get("after")
        start = ids.index(after) + 1 if after in ids else 0
        page = ids[start:start + limit]
        return web.json_response({"object": "list", "data": [self._video(vid) for vid in page],
                                  "first_id": page[0] if page else None, "last_id": page[-1] if page else None,
                                  "has_more": start + limit < len(ids)})

    async def openai_get(self, request: web.Request) -> web.Response:
        if (denied := self._openai_auth(request)) is not None:
            return denied
        vid = request.match_info["id"]
        if vid not in self.tasks:
            return self._openai_error(404, "Video not found", None)
        task = self.tasks[vid]
        phase = self._phase(task)
        if phase == "running":
            task["status"], task["progress"] = "in_progress", 50
        elif phase == "done":
            if "flagged" in task["prompt"]:
                task["status"] = "failed"
                task["error"] = {"code": "moderation_blocked", "message": "The video was blocked."}
            elif "weird-status" in task["prompt"]:
                task["status"] = "thinking"
            else:
                task["status"], task["progress"] = "completed", 100
        return web.json_response(self._video(vid), headers={"openai-poll-after-ms": str(self.openai_poll_after_ms)})

    async def openai_content(self, request: web.Request) -> web.Response:
        if (denied := self._openai_auth(request)) is not None:
            return denied
        task = self.tasks.get(request.match_info["id"])
        if task is None or "expire" in task["prompt"]:
            return self._openai_error(404, "Video content has expired", None)
        if request.query.get("variant", "video") != "video":
            return self._openai_error(400, "this fake only serves the video variant", "invalid_value", "variant")
        return web.Response(body=VIDEO_BYTES, content_type="video/mp4")

    async def openai_delete(self, request: web.Request) -> web.Response:
        if (denied := self._openai_auth(request)) is not None:
            return denied
        self.deleted.append(request.match_info["id"])
        return web.json_response({"id": request.match_info["id"], "object": "video.deleted", "deleted": True})

    async def openai_models(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Bearer sk-good"):
            return web.json_response({"object": "list", "data": []})
        return self._openai_error(401, "Incorrect API key", "invalid_api_key")

    # -- Kling ---------------------------------------------------------------------------------

    def _kling_auth(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            header, claims, signature = token.split(".")
            expected = hmac.new(KLING_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(base64.urlsafe_b64decode(signature + "=="), expected):
                raise ValueError("bad signature")
            if json.loads(base64.urlsafe_b64decode(header + "==")) != {"alg": "HS256", "typ": "JWT"}:
                raise ValueError("bad header")
            payload = json.loads(base64.urlsafe_b64decode(claims + "=="))
            now = time.time()
            if payload["iss"] != KLING_ACCESS or not payload["nbf"] <= now < payload["exp"]:
                raise ValueError("bad claims")
        except (ValueError, KeyError):
            return web.json_response({"code": 1002, "message": "Authorization is invalid", "request_id": "r"},
                                     status=401)
        return None

    def _kling(self, data: dict[str, Any] | None, *, code: int = 0, message: str = "SUCCEED",
               status: int = 200) -> web.Response:
        return web.json_response({"code": code, "message": message, "request_id": "req-1", "data": data},
                                 status=status)

    def _kling_invalid(self, kind: str, body: dict[str, Any]) -> str | None:
        """What Kling refuses with 1201: wrong types (duration is a string) or values."""
        if kind not in ("text2video", "image2video"):
            return f"unknown endpoint {kind}"
        unknown = sorted(set(body) - KLING_FIELDS[kind])
        if unknown:
            return f"{unknown[0]} is not a parameter of {kind}"
        if not isinstance(body.get("prompt"), str):
            return "prompt is required"
        durations = KLING_DURATIONS.get(body["model_name"], ("5", "10"))
        if body.get("duration") not in durations:
            return f"duration must be one of the strings {', '.join(durations)}"
        if body.get("mode", "std") not in ("std", "pro") or body.get("aspect_ratio", "16:9") not in ("16:9", "9:16",
                                                                                                     "1:1"):
            return "mode or aspect_ratio invalid"
        if "sound" in body and (body["model_name"] not in KLING_SOUND_MODELS or body["sound"] not in ("on", "off")):
            return "sound is not supported by this model"
        if kind == "image2video":
            image = body.get("image")
            if not isinstance(image, str) or image.startswith("data:"):
                return "image must be raw base64 or a URL"
        if "cfg_scale" in body and not body["model_name"].startswith("kling-v1"):
            return "cfg_scale is not supported by this model"
        return None

    async def kling_create(self, request: web.Request) -> web.Response:
        if (denied := self._kling_auth(request)) is not None:
            return denied
        body = request[SEEN].json
        kind = request.match_info["kind"]
        if body.get("model_name") not in self.kling_live_models:
            return self._kling(None, code=1203, message="model is not supported", status=404)
        if (problem := self._kling_invalid(kind, body)) is not None:
            return self._kling(None, code=1201, message=problem, status=400)
        external = body.get("external_task_id")
        if external and any(t.get("external") == external for t in self.tasks.values()):
            return self._kling(None, code=1201, message="external_task_id already exists", status=400)
        task_id = self._new_id("kt")
        self.tasks[task_id] = {"kind": kind, "prompt": body["prompt"], "polls": 0, "external": external,
                               "created": time.time()}
        return self._kling({"task_id": task_id, "task_status": "submitted", "created_at": 0, "updated_at": 0})

    async def kling_get(self, request: web.Request) -> web.Response:
        if (denied := self._kling_auth(request)) is not None:
            return denied
        key, kind = request.match_info["id"], request.match_info["kind"]
        task_id = key if key in self.tasks else next(
            (tid for tid, t in self.tasks.items() if t.get("external") == key), None)
        if task_id is None or self.tasks[task_id]["kind"] != kind:
            return self._kling(None, code=1201, message="task not found", status=400)
        task = self.tasks[task_id]
        if key != task_id:  # a lookup by external id (a retried submit) is not a status poll
            return self._kling({"task_id": task_id, "task_status": "submitted", "task_status_msg": "",
                                "task_info": {"external_task_id": key}, "created_at": 0, "updated_at": 0})
        phase = self._phase(task)
        status, result, msg = "submitted", None, ""
        if phase == "running":
            status = "processing"
        elif phase == "done":
            if "flagged" in task["prompt"]:
                status, msg = "failed", "Failure to pass the risk control system"
            elif "weird-status" in task["prompt"]:
                status = "meditating"
            else:
                status = "succeed"
                url = None if "no-output" in task["prompt"] else f"{self.base}/files/{task_id}.mp4"
                result = {"videos": [{"id": "v1", "url": url, "duration": "5"}] if url else []}
        return self._kling({"task_id": task_id, "task_status": status, "task_status_msg": msg,
                            "task_result": result, "created_at": 0, "updated_at": 0})
