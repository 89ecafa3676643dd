"""Settings: defaults, environment, and one clear line for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import Settings, describe_validation_error


def test_defaults_need_no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.discord_token is None
    assert settings.database_path == Path("data/bot.sqlite3")
    assert (settings.kling_provider, settings.sora_provider) == ("simulated", "simulated")
    assert settings.max_concurrent_jobs == 2


def test_environment_and_dotenv_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SORA_PROVIDER=openai\nDISCORD_TOKEN=\nSTART_BALANCE=7\n")
    monkeypatch.setenv("KLING_PROVIDER", "kling")
    settings = Settings()
    assert settings.kling_provider == "kling" and settings.sora_provider == "openai"
    assert settings.discord_token is None  # blank means unset
    assert settings.start_balance == 7


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "super-secret-token")
    settings = Settings()
    assert "super-secret-token" not in repr(settings) and "super-secret-token" not in str(settings.model_dump())
    assert settings.discord_token is not None and settings.discord_token.get_secret_value() == "super-secret-token"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("KLING_PROVIDER", "openai"), ("SORA_PROVIDER", "kling"), ("SIMULATED_SPEED", "0"), ("MAX_CONCURRENT_JOBS", "x"),
     ("OWNER_IDS", "123,@alice"), ("OWNER_IDS", "-5"), ("DAILY_SPEND_LIMIT", "-1"), ("DAILY_SPEND_LIMIT", "lots"),
     ("NEW_ACCOUNT_MIN_DAYS", "-1"), ("VIDEO_LINK_HOURS", "0"), ("BOT_ROLE", "worker"), ("BOT_ROLE", "gateway"),
     ("MEDIA_PARALLEL_ENCODES", "0")],
)
def test_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_validation_error(raised.value)
    assert line.startswith(f"Invalid setting {variable}:") and "\n" not in line


def test_env_example_documents_every_setting() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    documented = {line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    missing = {name.upper() for name in Settings.model_fields} - documented
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_bad_database_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "mysql://bot:hunter2@db/bot")
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_validation_error(raised.value)
    assert line.startswith("Invalid setting DATABASE_URL: must be a postgresql:// URL") and "hunter2" not in line


def test_operator_and_guard_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = Settings()
    assert defaults.owner_id_set() == set() and defaults.daily_spend_limit is None
    assert defaults.new_account_min_days == 7 and defaults.retired_settings() == []
    (tmp_path / ".env").write_text("OWNER_IDS= 12, 34 ,\nDAILY_SPEND_LIMIT=\nADMIN_GUILD_IDS=1,2\nADMIN_ROLE_ID=x\n")
    settings = Settings()
    assert settings.owner_id_set() == {12, 34} and settings.daily_spend_limit is None
    assert settings.retired_settings() == ["ADMIN_GUILD_IDS", "ADMIN_ROLE_ID"]  # ignored, never fatal
    monkeypatch.setenv("DAILY_SPEND_LIMIT", "500")
    assert Settings().daily_spend_limit == 500

def test_split_roles_need_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The gateway's wake-ups reach workers only through PostgreSQL NOTIFY."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BOT_ROLE", "worker")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "DATABASE_URL" in describe_validation_error(raised.value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot@db/bot")
    monkeypatch.setenv("SECRET_KEY", "k" * 32)
    assert Settings().bot_role == "worker"


def test_postgres_needs_a_shared_secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each process would otherwise make its own key file and could not read the others' secrets:
    refused at start in one line, like every other bad setting, not as a traceback from setup_hook."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:hunter2@db/bot")
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_validation_error(raised.value)
    assert line.startswith("Invalid setting SECRET_KEY: must be set with DATABASE_URL"), line
    assert "hunter2" not in line
    monkeypatch.setenv("SECRET_KEY", "k" * 32)
    assert Settings().database_url == "postgresql://bot:hunter2@db/bot"


@pytest.mark.parametrize("value", ["", "short", "x" * 31])
def test_short_secret_key_is_refused_without_echo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECRET_KEY", value)
    if not value:
        assert Settings().secret_key is None  # blank = unset: a key file is created instead
        return
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_validation_error(raised.value)
    assert line.startswith("Invalid setting SECRET_KEY: must be at least 32 bytes") and value not in line
    monkeypatch.setenv("SECRET_KEY", "x" * 32)
    assert Settings().secret_key is not None


@pytest.mark.parametrize("value", ["whsec_***not-base64***", "whsec_%%%%", "not base64 at all!"])
def test_unusable_webhook_secret_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_validation_error(raised.value)
    assert line.startswith("Invalid setting REPLICATE_WEBHOOK_SECRET:") and value not in line


def test_unpadded_webhook_secret_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLICATE_WEBHOOK_SECRET", "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZQ")
    assert Settings().replicate_webhook_secret is not None


def test_default_worker_id_is_host_and_pid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os
    import socket

    from bot.config import default_worker_id

    assert default_worker_id() == f"{socket.gethostname()}:{os.getpid()}"


@pytest.mark.parametrize(("variable", "value"), [
    ("CREDIT_PACKS", "123:50,abc:10"), ("CREDIT_PACKS", "123"), ("CREDIT_PACKS", "123:0"),
    ("CREDIT_PACKS", "123:5,123:6"), ("SUBSCRIPTION_SKUS", "99:-1"),
])
def test_bad_sku_map_stops_the_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         variable: str, value: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    line = describe_validation_error(raised.value)
    assert line.startswith(f"Invalid setting {variable}:") and "\n" not in line


def test_sku_maps_parse_in_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CREDIT_PACKS", " 222:500 , 111:50")
    monkeypatch.setenv("SUBSCRIPTION_SKUS", "")
    settings = Settings()
    assert list(settings.credit_pack_map().items()) == [(222, 500), (111, 50)]
    assert settings.subscription_map() == {}
