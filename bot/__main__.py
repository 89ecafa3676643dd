"""Entry point: `python -m bot`."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from bot.config import Settings, describe_validation_error


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as error:
        print(describe_validation_error(error), file=sys.stderr)
        return 2
    from bot.app import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
