"""Crash points for the reliability suite.

`BOT_CRASH_AT=<point>` makes the process kill itself with SIGKILL when it reaches that point, so
tests can prove that a crash anywhere in a job's life loses nothing and duplicates nothing. With
the variable unset (always, in production) this is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_reserve", "after_intent", "provider_accepted", "after_submit", "while_polling", "before_download",
          "after_download", "after_post", "after_delivered", "during_refund", "after_refund", "after_notice",
          "after_cancel")


def crash_point(name: str) -> None:
    if os.environ.get("BOT_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
