"""Process configuration, read once from the environment and `.env`.

Every setting is documented in `.env.example`. A bad value fails at start with one line naming
the variable (see `describe_validation_error`), because a bot that starts half-configured fails
later in a way users see first.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot import catalogue

KlingProvider = Literal["simulated", "replicate", "kling"]
SoraProvider = Literal["simulated", "replicate", "openai"]


class Settings(BaseSettings):
    """All settings of one bot process."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # Discord
    discord_token: SecretStr | None = None
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_dev_guild_id: int | None = None
    owner_ids: str | None = None  # comma-separated user ids: operators, besides the application's owner/team
    # Replaced by OWNER_IDS (operators) and /settings (guild managers); a value only earns a warning at start.
    admin_role_id: str | None = None
    admin_guild_ids: str | None = None

    # Storage
    database_path: Path = Path("data/bot.sqlite3")
    database_url: str | None = None  # postgresql://… switches storage to PostgreSQL

    # Processes (scale-out): gateway = slash commands and buttons; worker = poller and delivery
    bot_role: Literal["all", "gateway", "worker"] = "all"
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: str | None = None
    lease_seconds: float = Field(default=300.0, gt=0)
    video_dir: Path = Path("data/videos")
    keep_videos_hours: float = Field(default=24.0, ge=0)
    public_base_url: str | None = None
    video_link_hours: float = Field(default=72.0, gt=0, le=24 * 365)  # how long a posted video link works
    web_enabled: bool = True  # metrics and health; false = no HTTP server (and no /videos, no webhooks)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)  # 0 = any free port (logged at start)
    health_max_loop_lag_seconds: float = Field(default=5.0, gt=0)
    media_parallel_encodes: int = Field(default=1, ge=1, le=8)  # re-encodes of over-limit videos at once

    # Models: the shipped catalogue (bot/models.toml) plus the operator's entries, merged by id
    models_file: Path | None = None

    # Providers
    kling_provider: KlingProvider = "simulated"
    sora_provider: SoraProvider = "simulated"
    replicate_api_token: SecretStr | None = None
    replicate_api_base: str = "https://api.replicate.com"
    replicate_webhook_secret: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_delete_after_download: bool = True
    kling_access_key: SecretStr | None = None
    kling_secret_key: SecretStr | None = None
    kling_api_base: str = "https://api-singapore.klingai.com"
    # Deprecated: the default models' ids at the configured provider (use MODELS_FILE provider_ids)
    kling_model: str | None = None
    sora_model: str | None = None
    sora_pro_model: str | None = None
    provider_timeout_seconds: float = Field(default=30.0, gt=0)

    # Simulated provider
    simulated_speed: float = Field(default=0.1, gt=0, le=10)
    simulated_fps: int = Field(default=12, ge=1, le=60)
    simulated_fail: str | None = None

    # Reference images (first frames)
    reference_image_hosts: str = "cdn.discordapp.com,media.discordapp.net"
    reference_image_allow_private: bool = False
    reference_image_max_bytes: int = Field(default=20 * 1024 * 1024, gt=0)

    # Poller
    worker_id: str | None = None
    poll_time_scale: float = Field(default=1.0, gt=0)
    max_render_minutes: float = Field(default=60.0, gt=0)  # a render still running after this is canceled
    max_parallel_jobs: int = Field(default=16, ge=1)
    max_job_steps_per_second: float = Field(default=50.0, gt=0)  # status polls, submits, downloads started
    # List sweeps (bot/sweep.py): with at least SWEEP_MIN_JOBS renders in flight at a provider that lists
    # its tasks, one list request every SWEEP_SECONDS (x POLL_TIME_SCALE) answers for them all; 0 = off.
    sweep_seconds: float = Field(default=8.0, ge=0)
    sweep_min_jobs: int = Field(default=3, ge=1)
    sweep_max_pages: int = Field(default=50, ge=1)  # 100 tasks a page; older renders are polled one by one

    # Credits
    start_balance: int = Field(default=100, ge=0)
    daily_grant: int = Field(default=20, ge=0)
    # Deprecated: prices live in the catalogue (price_per_second); set, these override the default models'
    price_kling_per_second: int | None = Field(default=None, ge=0)
    price_sora_per_second: int | None = Field(default=None, ge=0)
    price_sora_high_per_second: int | None = Field(default=None, ge=0)
    max_concurrent_jobs: int = Field(default=2, ge=1)
    daily_spend_limit: int | None = Field(default=None, ge=0)  # credits across all users per UTC day; blank = none
    new_account_min_days: float = Field(default=7.0, ge=0)  # younger Discord accounts get no grants yet
    # A cancel the provider cannot honour (Kling official, OpenAI) still costs this share of the price:
    # the render goes on and is paid for. Confirmed cancels and cancels before submission are free.
    cancel_charge_percent: int = Field(default=100, ge=0, le=100)

    # Credits bought inside Discord (premium app SKUs): "SKU_ID:CREDITS,..." and "SKU_ID:DAILY_GRANT,..."
    credit_packs: str | None = None
    subscription_skus: str | None = None
    entitlement_reconcile_seconds: float = Field(default=300.0, gt=0)  # re-list unconsumed purchases this often

    # Secrets at rest
    secret_key: SecretStr | None = Field(default=None, validate_default=True)

    # Sandbox
    sandbox_host: str = "127.0.0.1"
    sandbox_port: int = Field(default=8765, ge=0, le=65535)
    sandbox_dir: Path = Path("data/sandbox")  # the loopback world (guild, people, channels, messages, files)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("discord_token", "secret_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """Treat `DISCORD_TOKEN=` in `.env` as unset, as people write it that way."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("daily_spend_limit", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        """`DAILY_SPEND_LIMIT=` (blank) means no limit."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("owner_ids")
    @classmethod
    def _user_id_list(cls, value: str | None) -> str | None:
        """Comma-separated Discord user ids; a typo must stop the bot rather than silently drop an operator."""
        if value is None or not value.strip():
            return None
        parts = [part.strip() for part in value.split(",") if part.strip()]
        bad = [part for part in parts if not part.isdigit() or not 0 < int(part) < 2**64]
        if bad:
            raise ValueError(f"must be comma-separated Discord user ids; not an id: {bad[0]!r}")
        return ",".join(parts)

    @field_validator("credit_packs", "subscription_skus")
    @classmethod
    def _sku_map(cls, value: str | None) -> str | None:
        """`SKU_ID:AMOUNT,...`; a typo must stop the bot rather than sell a pack that credits nothing."""
        if value is None or not value.strip():
            return None
        seen: set[str] = set()
        for part in (part.strip() for part in value.split(",") if part.strip()):
            sku, _, amount = part.partition(":")
            sku, amount = sku.strip(), amount.strip()
            if not sku.isdigit() or not 0 < int(sku) < 2**64:
                raise ValueError(f"must be SKU_ID:AMOUNT pairs separated by commas; not a SKU id: {sku!r}")
            if not amount.isdigit() or not 0 < int(amount) <= 1_000_000:
                raise ValueError(f"must be SKU_ID:AMOUNT pairs; the amount for {sku} must be 1..1000000")
            if sku in seen:
                raise ValueError(f"SKU {sku} is listed twice")
            seen.add(sku)
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """A short key is guessable; 32 bytes is what `secrets.token_urlsafe(32)` gives (or longer).
        With PostgreSQL several processes share the data: a per-host key file would make each one unable
        to read the others' secrets, so the key must be given."""
        if value is None and info.data.get("database_url"):
            raise ValueError("must be set with DATABASE_URL: every process has to share it (e.g. `python -c "
                             "'import secrets; print(secrets.token_urlsafe(48))'`)")
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes long (e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(48))'`)")
        return value

    @field_validator("replicate_webhook_secret", mode="before")
    @classmethod
    def _whsec(cls, value: object) -> object:
        """Refuse a secret that is not base64 at start: the library would otherwise decode junk into some key."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            raw = value.strip().removeprefix("whsec_")
            if not raw:
                return None
            try:
                key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("must be the whsec_… value from Replicate (base64)") from None
            if not key:
                raise ValueError("must be the whsec_… value from Replicate (base64)")
            return value.strip()
        return value

    @field_validator("bot_role")
    @classmethod
    def _split_roles_need_postgres(cls, value: str, info: ValidationInfo) -> str:
        """On SQLite the gateway's wake-ups (PostgreSQL NOTIFY) cannot reach a worker: jobs would stall."""
        if value != "all" and not info.data.get("database_url"):
            raise ValueError(f"{value} needs DATABASE_URL (PostgreSQL): on SQLite a gateway's new jobs "
                             "cannot wake a worker; use BOT_ROLE=all")
        return value

    @field_validator("models_file", mode="before")
    @classmethod
    def _models_file(cls, value: object) -> object:
        """Load and check the file now: a bad catalogue must stop the bot at start, not at a command."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            catalogue.load(Path(str(value)))
        except catalogue.CatalogueError as error:
            raise ValueError(str(error).removeprefix("MODELS_FILE: ")) from None
        return value

    @field_validator("price_kling_per_second", "price_sora_per_second", "price_sora_high_per_second",
                     "kling_model", "sora_model", "sora_pro_model", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def build_catalogue(self) -> catalogue.Catalogue:
        """MODELS_FILE merged over the shipped catalogue (checked once already, at validation)."""
        return catalogue.load(self.models_file)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (leave it empty for SQLite at DATABASE_PATH)")
        return value

    @property
    def prepared_dir(self) -> Path:
        """Scratch copies made postable (remuxed, re-encoded, blind clips): delivery and /job show write there,
        retention sweeps what a killed process left."""
        return self.video_dir / "prepared"

    @property
    def database_location(self) -> Path | str:
        """Where storage lives: the PostgreSQL URL when set, else the SQLite file."""
        return self.database_url or self.database_path

    def owner_id_set(self) -> set[int]:
        """OWNER_IDS as ints (the application's owner or team are added at start)."""
        return {int(part) for part in (self.owner_ids or "").split(",") if part}

    def retired_settings(self) -> list[str]:
        """Retired variables that are still set: ignored, but worth a warning at start."""
        return [name.upper() for name in ("admin_guild_ids", "admin_role_id")
                if (getattr(self, name) or "").strip()]

    def credit_pack_map(self) -> dict[int, int]:
        """CREDIT_PACKS as {sku id: credits}, in the order written (the order of the buy buttons)."""
        return _sku_pairs(self.credit_packs)

    def subscription_map(self) -> dict[int, int]:
        """SUBSCRIPTION_SKUS as {sku id: daily grant while subscribed}."""
        return _sku_pairs(self.subscription_skus)

    def shard_id_list(self) -> list[int] | None:
        if not self.shard_ids:
            return None
        return [int(part) for part in self.shard_ids.split(",") if part.strip()]

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level


def _sku_pairs(value: str | None) -> dict[int, int]:
    pairs = (part.split(":") for part in (value or "").split(",") if part.strip())
    return {int(sku): int(amount) for sku, amount in pairs}


def default_worker_id() -> str:
    """host:pid, so two processes on one host (or a restart before the old lease ends) never share leases."""
    return f"{socket.gethostname()}:{os.getpid()}"


def describe_validation_error(error: ValidationError) -> str:
    """Render a settings error as one line naming the environment variable."""
    first = error.errors()[0]
    name = "_".join(str(part) for part in first["loc"]).upper() or "settings"
    message = str(first["msg"]).removeprefix("Value error, ")
    if any(word in name for word in ("TOKEN", "KEY", "SECRET", "DATABASE_URL")):  # never echo credentials
        return f"Invalid setting {name}: {message}"
    return f"Invalid setting {name}: {message} (got {first.get('input')!r})"

