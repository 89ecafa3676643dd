"""Loopback fakes of Replicate, OpenAI Videos and Kling, written from PROVIDERS.md.

One aiohttp server hosts all three under /replicate, /openai/v1 and /kling. Each records every
request (method, path, headers, JSON or multipart fields) and can be told to misbehave: a status
with a body and headers, a hung connection, a garbage body. Prompts steer outcomes: "flagged"
fails moderation, "weird-status" reports an unknown status, "no-output" succeeds without a URL,
"expire" makes the output URL 404.
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

from aiohttp import web
from PIL import Image

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + b"fake-video-payload" * 64
REPLICATE_TOKEN = "r8_testtoken1234567890"
OPENAI_KEY = "sk-operator-0123456789abcdef"
KLING_ACCESS = "kling-access-key"
KLING_SECRET = "kling-secret-key-0123456789"


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


class FakeProviders:
    """All three fake APIs on one loopback port."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.faults: list[Fault] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.openai_retired = False
        self.kling_live_models = {"kling-v2-master", "kling-v1-6", "kling-v2-5-turbo"}
        self.steps = 2  # status polls before a task finishes
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
        r.add_get("/replicate/v1/predictions/{id}", self.replicate_get)
        r.add_post("/replicate/v1/predictions/{id}/cancel", self.replicate_cancel)
        r.add_post("/openai/v1/videos", self.openai_create)
        r.add_get("/openai/v1/videos/{id}", self.openai_get)
        r.add_get("/openai/v1/videos/{id}/content", self.openai_content)
        r.add_delete("/openai/v1/videos/{id}", self.openai_delete)
        r.add_get("/openai/v1/models", self.openai_models)
        r.add_post("/kling/v1/videos/{kind}", self.kling_create)
        r.add_get("/kling/v1/videos/{kind}/{id}", self.kling_get)
        r.add_get("/files/{name}", self.file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def fail(self, path: str, *, times: int = 1, status: int = 500, body: Any = None,
             headers: dict[str, str] | None = None, hang: float = 0.0, garbage: bool = False) -> None:
        self.faults.append(Fault(re.compile(path), times, status, body, headers or {}, hang, garbage))

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
        for fault in self.faults:
            if fault.times > 0 and fault.pattern.search(request.path):
                fault.times -= 1
                if fault.hang:
                    await asyncio.sleep(fault.hang)
                if fault.garbage:
                    return web.Response(text="<html>502 Bad Gateway</html>", status=fault.status,
                                        content_type="text/html")
                return web.json_response(fault.body if fault.body is not None else {"detail": "fault"},
                                         status=fault.status, headers=fault.headers)
        return await handler(request)

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}{self._ids:06d}"

    def _advance(self, task: dict[str, Any]) -> int:
        task["polls"] += 1
        return task["polls"]

    async def file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        task = self.tasks.get(name.removesuffix(".mp4"))
        if task is None or "expire" in task["prompt"]:
            return web.json_response({"detail": "gone"}, status=404)
        return web.Response(body=VIDEO_BYTES, content_type="video/mp4")

    # -- Replicate -----------------------------------------------------------------------------

    def _replicate_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {REPLICATE_TOKEN}":
            return web.json_response({"detail": "Invalid token."}, status=401)
        return None

    async def replicate_create(self, request: web.Request) -> web.Response:
        if (denied := self._replicate_auth(request)) is not None:
            return denied
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        if model not in {"kwaivgi/kling-v2.0", "openai/sora-2", "openai/sora-2-pro"}:
            return web.json_response({"detail": "Not found."}, status=404)
        body = request[SEEN].json
        pid = self._new_id("rp")
        self.tasks[pid] = {"kind": "replicate", "model": model, "prompt": body["input"]["prompt"], "polls": 0,
                           "canceled": False}
        return web.json_response(self._prediction(pid), status=201)

    def _prediction(self, pid: str) -> dict[str, Any]:
        task = self.tasks[pid]
        prompt = task["prompt"]
        status, output, error = "starting", None, None
        if task["canceled"]:
            status = "canceled"
        elif task["polls"] >= self.steps:
            if "flagged" in prompt:
                status, error = "failed", "Prediction failed: content flagged by the safety checker"
            elif "weird-status" in prompt:
                status = "pondering"
            else:
                status = "succeeded"
                output = None if "no-output" in prompt else f"{self.base}/files/{pid}.mp4"
        elif task["polls"] > 0:
            status = "processing"
        return {"id": pid, "model": task["model"], "status": status, "output": output, "error": error,
                "logs": f"frame {task['polls']}/3 {min(99, task['polls'] * 40)}%|",
                "urls": {"get": f"{self.base}/replicate/v1/predictions/{pid}",
                         "cancel": f"{self.base}/replicate/v1/predictions/{pid}/cancel"}}

    async def replicate_get(self, request: web.Request) -> web.Response:
        if (denied := self._replicate_auth(request)) is not None:
            return denied
        pid = request.match_info["id"]
        if pid not in self.tasks:
            return web.json_response({"detail": "Not found."}, status=404)
        self._advance(self.tasks[pid])
        return web.json_response(self._prediction(pid))

    async def replicate_cancel(self, request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        self.tasks[pid]["canceled"] = True
        return web.json_response(self._prediction(pid))

    # -- OpenAI --------------------------------------------------------------------------------

    def _openai_auth(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk-"):
            return web.json_response({"error": {"message": "Incorrect API key provided", "type":
                                                "invalid_request_error", "param": None, "code": "invalid_api_key"}},
                                     status=401)
        return None

    async def openai_create(self, request: web.Request) -> web.Response:
        if (denied := self._openai_auth(request)) is not None:
            return denied
        seen: Seen = request[SEEN]
        fields = seen.json if seen.json is not None else seen.form
        if self.openai_retired:
            return web.json_response({"error": {"message": f"The model `{fields['model']}` does not exist",
                                                "type": "invalid_request_error", "param": "model",
                                                "code": "model_not_found"}}, status=404)
        if "flagged" in fields["prompt"] and "late" not in fields["prompt"]:
            return web.json_response({"error": {"message": "Your request was blocked by our moderation system.",
                                                "type": "invalid_request_error", "param": "prompt",
                                                "code": "moderation_blocked"}}, status=400)
        vid = self._new_id("video_")
        self.tasks[vid] = {"kind": "openai", "prompt": fields["prompt"], "polls": 0, "model": fields["model"],
                           "seconds": fields["seconds"], "size": fields["size"]}
        return web.json_response(self._video(vid))

    def _video(self, vid: str) -> dict[str, Any]:
        task = self.tasks[vid]
        status, progress, error = "queued", 0, None
        if task["polls"] >= self.steps:
            if "flagged" in task["prompt"]:
                status, error = "failed", {"code": "moderation_blocked", "message": "The video was blocked."}
            elif "weird-status" in task["prompt"]:
                status = "thinking"
            else:
                status, progress = "completed", 100
        elif task["polls"] > 0:
            status, progress = "in_progress", 50
        return {"id": vid, "object": "video", "model": task["model"], "status": status, "progress": progress,
                "created_at": int(time.time()), "completed_at": None, "expires_at": None, "size": task["size"],
                "seconds": task["seconds"], "error": error, "remixed_from_video_id": None}

    async def openai_get(self, request: web.Request) -> web.Response:
        if (denied := self._openai_auth(request)) is not None:
            return denied
        vid = request.match_info["id"]
        if vid not in self.tasks:
            return web.json_response({"error": {"message": "not found", "code": None}}, status=404)
        self._advance(self.tasks[vid])
        return web.json_response(self._video(vid), headers={"openai-poll-after-ms": "1500"})

    async def openai_content(self, request: web.Request) -> web.Response:
        if (denied := self._openai_auth(request)) is not None:
            return denied
        task = self.tasks.get(request.match_info["id"])
        if task is None or "expire" in task["prompt"]:
            return web.json_response({"error": {"message": "expired"}}, status=404)
        return web.Response(body=VIDEO_BYTES, content_type="video/mp4")

    async def openai_delete(self, request: web.Request) -> web.Response:
        self.deleted.append(request.match_info["id"])
        return web.json_response({"id": request.match_info["id"], "object": "video.deleted", "deleted": True})

    async def openai_models(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").startswith("Bearer sk-good"):
            return web.json_response({"object": "list", "data": []})
        return web.json_response({"error": {"message": "Incorrect API key", "code": "invalid_api_key"}}, status=401)

    # -- Kling ---------------------------------------------------------------------------------

    def _kling_auth(self, request: web.Request) -> web.Response | None:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            header, claims, signature = token.split(".")
            expected = hmac.new(KLING_SECRET.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(base64.urlsafe_b64decode(signature + "=="), expected):
                raise ValueError("bad signature")
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

    async def kling_create(self, request: web.Request) -> web.Response:
        if (denied := self._kling_auth(request)) is not None:
            return denied
        body = request[SEEN].json
        if body["model_name"] not in self.kling_live_models:
            return self._kling(None, code=1203, message="model is not supported", status=404)
        external = body.get("external_task_id")
        if external and any(t.get("external") == external for t in self.tasks.values()):
            return self._kling(None, code=1201, message="external_task_id already exists", status=400)
        task_id = self._new_id("kt")
        self.tasks[task_id] = {"kind": request.match_info["kind"], "prompt": body["prompt"], "polls": 0,
                               "external": external}
        return self._kling({"task_id": task_id, "task_status": "submitted", "created_at": 0, "updated_at": 0})

    async def kling_get(self, request: web.Request) -> web.Response:
        if (denied := self._kling_auth(request)) is not None:
            return denied
        key = request.match_info["id"]
        task_id = key if key in self.tasks else next(
            (tid for tid, t in self.tasks.items() if t.get("external") == key), None)
        if task_id is None:
            return self._kling(None, code=1201, message="task not found", status=400)
        task = self.tasks[task_id]
        polls = self._advance(task)
        status, result, msg = "submitted", None, ""
        if polls > self.steps:
            if "flagged" in task["prompt"]:
                status, msg = "failed", "Failure to pass the risk control system (safety)"
            elif "weird-status" in task["prompt"]:
                status = "meditating"
            else:
                status = "succeed"
                url = None if "no-output" in task["prompt"] else f"{self.base}/files/{task_id}.mp4"
                result = {"videos": [{"id": "v1", "url": url, "duration": "5"}] if url else []}
        elif polls > 1:
            status = "processing"
        return self._kling({"task_id": task_id, "task_status": status, "task_status_msg": msg,
                            "task_result": result, "created_at": 0, "updated_at": 0})


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size
