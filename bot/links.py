"""Private, expiring links to stored videos.

A link names the job, an expiry time and an HMAC over both, keyed from the bot's secret
(`SecretBox.subkey`), so links cannot be guessed or enumerated (`job1.mp4`, `job2.mp4`…) and stop
working after `VIDEO_LINK_HOURS`. `/job show` always signs a fresh one while the file exists.
Anything that is not exactly such a name (other files, `%2F`, `..`, other encodings) is refused
before the file system is touched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Callable

NAME = re.compile(r"job(?P<id>[1-9][0-9]{0,17})-(?P<exp>[1-9][0-9]{9,10})-(?P<sig>[A-Za-z0-9_-]{22})\.mp4")
SIGNATURE_BYTES = 16  # 128 bits
ROUND_SECONDS = 3600  # expiries are rounded up to the hour, so repeated links within an hour are identical


class VideoLinks:
    """Signs and checks the names under `/videos/`."""

    def __init__(self, key: bytes, base_url: str | None, hours: float, clock: Callable[[], float]) -> None:
        self._key = key
        self.base_url = base_url.rstrip("/") if base_url else None
        self.hours = hours
        self.clock = clock

    def _signature(self, job_id: int, expires: int) -> str:
        digest = hmac.new(self._key, f"video:{job_id}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).rstrip(b"=").decode("ascii")

    def name(self, job_id: int) -> str:
        """A signed file name valid for `hours` (at least; rounded up to the hour)."""
        expires = math.ceil((self.clock() + self.hours * 3600) / ROUND_SECONDS) * ROUND_SECONDS
        return f"job{job_id}-{expires}-{self._signature(job_id, expires)}.mp4"

    def url(self, job_id: int) -> str | None:
        if self.base_url is None:
            return None
        return f"{self.base_url}/videos/{self.name(job_id)}"

    def job_id(self, name: str) -> int | None:
        """The job a requested name stands for, or None when it is not a live, authentic link."""
        match = NAME.fullmatch(name)
        if match is None:
            return None
        job_id, expires = int(match["id"]), int(match["exp"])
        if not hmac.compare_digest(match["sig"], self._signature(job_id, expires)):
            return None
        if expires < self.clock():
            return None
        return job_id
