"""The cogs' only way to the domain is bot.service: no cog imports storage or reaches for the bot's store, and no
module finds a cog by name (the buttons hold a typed reference to the cog that registered them)."""

from __future__ import annotations

import ast
from pathlib import Path

import bot
import cogs

COGS_DIR = Path(cogs.__file__).parent
BOT_DIR = Path(bot.__file__).parent


def storage_reaches(source: str) -> list[str]:
    """Each place in `source` that imports storage or touches a `.store` attribute (or getattr(x, "store"))."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "storage":
            found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found.extend(f"line {node.lineno}: import {alias.name}" for alias in node.names
                         if alias.name.split(".")[0] == "storage")
        elif isinstance(node, ast.Attribute) and node.attr == "store":
            found.append(f"line {node.lineno}: .store")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and any(isinstance(arg, ast.Constant) and arg.value == "store" for arg in node.args)):
            found.append(f"line {node.lineno}: getattr(..., 'store')")
    return sorted(found, key=lambda text: int(text.split(':')[0].split()[1]))


def cog_lookups(source: str) -> list[int]:
    """Lines calling `get_cog(...)`: a lookup by name that no type checker can follow."""
    return sorted(node.lineno for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get_cog")


def test_no_cog_imports_storage_or_holds_the_store() -> None:
    modules = sorted(COGS_DIR.glob("*.py"))
    assert len(modules) >= 5  # the glob found the cogs
    offences = {path.name: found for path in modules
                if (found := storage_reaches(path.read_text(encoding="utf-8")))}
    assert offences == {}


def test_nothing_finds_a_cog_by_name() -> None:
    offences = {str(path.relative_to(BOT_DIR.parent)): lines
                for path in [*COGS_DIR.glob("*.py"), *BOT_DIR.rglob("*.py")]
                if (lines := cog_lookups(path.read_text(encoding="utf-8")))}
    assert offences == {}


def test_the_checks_find_what_they_look_for() -> None:
    source = (
        "import storage.ledger\n"
        "from storage import Job\n"
        "from storage.models import JobState\n"
        "import stored\n"
        "ledger = self.bot.store.ledger\n"
        "again = getattr(bot, 'store')\n"
        "fine = self.bot.service.purchases\n"
        "cog = interaction.client.get_cog('Video')\n"
    )
    assert storage_reaches(source) == [
        "line 1: import storage.ledger", "line 2: from storage import ...", "line 3: from storage.models import ...",
        "line 5: .store", "line 6: getattr(..., 'store')",
    ]
    assert cog_lookups(source) == [8]


def test_the_service_does_not_reach_through_the_poller() -> None:
    """Secrets, file paths and wake-ups come from the runner that owns them, not from the scheduler."""
    tree = ast.parse((BOT_DIR / "service.py").read_text(encoding="utf-8"))
    imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "bot.poller" not in imports and "poller" not in attributes
    assert "bot.runner" in imports  # the check reads the right file


def delivery_reaches(source: str) -> list[int]:
    """Lines touching a `.delivery` attribute: Discord delivery is the runner's adapter, not the cogs' toolbox."""
    return sorted(node.lineno for node in ast.walk(ast.parse(source))
                  if isinstance(node, ast.Attribute) and node.attr == "delivery")


def test_no_cog_reaches_into_delivery() -> None:
    """/job show and the blind reveal get links and upload-fitted videos from the service."""
    assert delivery_reaches("link = self.bot.delivery.public_link(job)\n") == [1]
    offences = {path.name: lines for path in sorted(COGS_DIR.glob("*.py"))
                if (lines := delivery_reaches(path.read_text(encoding="utf-8")))}
    assert offences == {}
