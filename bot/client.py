"""The discord.py client: wires storage, providers, poller and delivery together in `setup_hook`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot import catalogue, metrics, retention
from bot.config import Settings
from bot.crypto import SecretBox
from bot.delivery import Delivery
from bot.errors import VideoTree
from bot.poller import Poller
from bot.providers.registry import ProviderRegistry
from bot.runner import JobRunner
from bot.service import VideoService
from bot.web import WebServer
from storage import CreditPolicy, Store

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.info", "cogs.video", "cogs.credits", "cogs.jobs", "cogs.keys", "cogs.settings", "cogs.store")


class VideoBot(commands.Bot):
    """One bot process; everything it owns is opened in `setup_hook` and closed in `close`."""

    store: Store
    secrets: SecretBox
    providers: ProviderRegistry
    delivery: Delivery
    poller: Poller
    runner: JobRunner
    service: VideoService

    def __init__(self, settings: Settings, *, providers: ProviderRegistry | None = None,
                 clock: Callable[[], float] = time.time, serve_web: bool = True, **options: Any) -> None:
        """`serve_web=False` when something else serves the videos and callbacks (the sandbox console).

        Metrics and health are served at WEB_HOST:WEB_PORT either way, unless WEB_ENABLED=false.
        """
        self.metrics = metrics.Metrics()
        self.loop_monitor = metrics.LoopMonitor(self.metrics)
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
            http_trace=self._ack_trace(),
            tree_cls=VideoTree,
            **options,
        )
        self.settings = settings
        # The models this process offers: validators, choices and prices all read it from here on.
        catalogue.install(settings.build_catalogue())
        self.clock = clock
        self.operators: dict[int, str] = {}  # user id -> where that operator came from; filled in setup_hook
        self._providers = providers
        self._serve_web = serve_web

    async def setup_hook(self) -> None:
        """Open storage and providers; then what the process role asks for (commands, poller, or both)."""
        settings = self.settings
        # Tasks started from here on (poller, gateway handlers) record into this process's metrics.
        metrics.current.set(self.metrics)
        self.loop_monitor.start()
        for name in settings.retired_settings():
            log.warning("%s is set but no longer used: bot operators are OWNER_IDS plus the application's owner "
                        "or team (they grant credits and set prices); server managers use /settings", name)
        # The key first: a bad one stops the start before anything (a database, threads) is opened.
        self.secrets = SecretBox.from_settings(settings.secret_key, settings.database_path.parent / "secret.key")
        policy = CreditPolicy(start_balance=settings.start_balance, daily_grant=settings.daily_grant,
                              max_concurrent_jobs=settings.max_concurrent_jobs,
                              daily_spend_limit=settings.daily_spend_limit,
                              new_account_min_days=settings.new_account_min_days)
        self.store = await Store.open(settings.database_location, policy)
        self.store.jobs.watch(self.metrics.job_changed)
        self.providers = self._providers or ProviderRegistry(settings)
        self.delivery = Delivery(self, settings, self.secrets, clock=self.clock)
        self.runner = JobRunner(self.store, self.providers, settings, notifier=self.delivery, secrets=self.secrets,
                                clock=self.clock)
        self.poller = Poller(self.store, self.runner, settings)
        self.service = VideoService(settings, self.store, self.providers, self.runner,
                                    links=self.delivery.links, encoder=self.delivery.encoder)
        if settings.bot_role in ("all", "gateway"):
            await self.load_operators()
            for extension in EXTENSIONS:
                await self.load_extension(extension)
            await self.sync_commands()
        if settings.bot_role in ("all", "worker"):
            await self.store.on_new_jobs(self.poller.wake)  # other processes' new jobs (PostgreSQL)
            self.poller.start()
            self._retention = asyncio.create_task(retention.run_forever(self.store, settings.keep_videos_hours,
                                                                        settings.video_dir / "refs",
                                                                        settings.prepared_dir),
                                                  name="retention")
        self.web: WebServer | None = None
        if settings.web_enabled:
            self.web = WebServer(self, serve_files=bool(settings.public_base_url and self._serve_web))
            await self.web.start()
            log.info("metrics and health on http://%s:%d (/metrics, /healthz, /readyz)", settings.web_host,
                     self.web.port)

    def _ack_trace(self) -> aiohttp.TraceConfig:
        """Time interaction acknowledgements: from the gateway event to Discord's answer to the callback."""
        trace = aiohttp.TraceConfig()

        async def on_request_end(session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
            parts = params.url.path.rstrip("/").split("/")
            if len(parts) >= 4 and parts[-1] == "callback" and parts[-4] == "interactions" \
                    and parts[-3].isdigit() and params.response.status < 400:
                self.metrics.interaction_acknowledged(int(parts[-3]))

        trace.on_request_end.append(on_request_end)
        return trace

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        if event_name == "interaction" and args:
            self.metrics.interaction_received(args[0].id)
        super().dispatch(event_name, *args, **kwargs)

    def gateway_connected(self) -> bool:
        """Ready and every gateway socket open (all shards for a sharded bot)."""
        if not self.is_ready() or self.is_closed():
            return False
        shards = getattr(self, "shards", None)
        if isinstance(shards, dict) and shards:
            return all(not shard.is_closed() for shard in shards.values())
        return self.ws is not None and self.ws.open

    async def load_operators(self) -> None:
        """Operators (may mint credits and set prices): OWNER_IDS plus the application's owner or team members.

        Read once at start; if Discord's application info cannot be fetched, OWNER_IDS alone count.
        """
        operators = dict.fromkeys(self.settings.owner_id_set(), "OWNER_IDS")
        try:
            info = await self.application_info()
        except discord.HTTPException as error:
            log.warning("could not fetch the application's owner from Discord (%s); operators are OWNER_IDS only",
                        error.status)
        else:
            if info.team is not None:
                for member in info.team.members:  # only accepted members: an invitation grants nothing yet
                    if member.membership_state is discord.TeamMembershipState.accepted:
                        operators.setdefault(member.id, f"team {info.team.name}")
            elif info.owner is not None:
                operators.setdefault(info.owner.id, "application owner")
        self.operators = operators
        if operators:
            log.info("operators (may grant credits and set prices): %s",
                     ", ".join(f"{user_id} ({source})" for user_id, source in sorted(operators.items())))
        else:
            log.info("operators: none known (OWNER_IDS is empty and Discord named no application owner): "
                     "/credits-grant and /credits-set-price are refused for everyone")

    def is_operator(self, user_id: int) -> bool:
        return user_id in self.operators

    async def sync_commands(self) -> None:
        """Register the slash commands: instantly in a dev guild, else globally."""
        if self.settings.discord_dev_guild_id:
            guild = discord.Object(self.settings.discord_dev_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Commands come first: the poller backs off briefly so the answer makes Discord's 3 s window."""
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.commands_arriving()

    async def on_ready(self) -> None:
        log.info("ready as %s in %d guilds", self.user, len(self.guilds))

    async def close(self) -> None:
        if getattr(self, "web", None) is not None:
            await self.web.stop()  # type: ignore[union-attr]
        await self.loop_monitor.stop()
        if hasattr(self, "_retention"):
            self._retention.cancel()
        if hasattr(self, "poller"):
            await self.poller.stop()
        if hasattr(self, "providers"):
            await self.providers.aclose()
        if hasattr(self, "store"):
            await self.store.close()
        await super().close()


class ShardedVideoBot(VideoBot, commands.AutoShardedBot):
    """The same bot over several gateway shards (SHARD_COUNT / SHARD_IDS), for thousands of guilds."""
