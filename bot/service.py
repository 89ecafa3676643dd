"""The domain behind the commands: turn a validated request into a paid, stored, scheduled job.

Cogs call this with plain data (no discord objects), so the same path serves slash commands,
buttons (rerun, variation, render with Sora) and tests. It is the cogs' only way to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from bot import logcontext, media
from bot.config import Settings
from bot.faults import crash_point
from bot.links import VideoLinks
from bot.pricing import current_prices
from bot.providers.base import JobContext
from bot.providers.registry import ProviderRegistry
from bot.purchases import Purchases
from bot.requests import AnyRequest, PriceTable, SoraRequest, request_from_json
from bot.runner import JobRunner

# `X as X`: the domain vocabulary the cogs speak, re-exported. A cog imports it from here, never from storage
# (tests/bot/test_layering.py checks that no cog imports storage or reaches for the bot's store).
from storage import (
    Compare,
    ComparePairing,
    ConcurrencyLimit as ConcurrencyLimit,
    DailySpendLimit as DailySpendLimit,
    GuildSettings,
    IllegalTransition as IllegalTransition,
    InsufficientCredits as InsufficientCredits,
    Job,
    JobState,
    LedgerEntry,
    MemberDailyCap as MemberDailyCap,
    NewJob,
    SettingsChange,
    Store,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invocation:
    """Where a command came from, as far as delivery needs to know later."""

    user_id: int
    channel_id: int | None
    guild_id: int | None = None
    is_dm: bool = False
    guild_installed: bool = True
    interaction_id: int | None = None
    application_id: int | None = None
    token: str | None = None
    expires_at: float | None = None
    upload_limit: int | None = None
    rules_guild_id: int | None = None  # the guild whose /settings caps apply (where the bot is installed)


@dataclass(frozen=True)
class Created:
    jobs: list[Job]
    balance: int


@dataclass(frozen=True)
class CancelTerms:
    """The price of canceling one job, known before the user confirms."""

    job_id: int
    price: int
    charge: int  # charged even if canceled now (the provider cannot stop the render)
    stoppable: bool  # before submission, or the provider can stop it (refunded in full if it confirms)
    submitted: bool
    provider: str = ""

    def words(self) -> str:
        if not self.price:
            return f"Cancel job #{self.job_id}? It costs you nothing."
        if not self.submitted:
            return (f"Cancel job #{self.job_id}? It has not reached the provider yet: all {self.price} credits "
                    "come back.")
        if self.stoppable:
            return (f"Cancel job #{self.job_id}? The provider will be asked to stop it: when it confirms, all "
                    f"{self.price} credits come back.")
        if self.charge >= self.price:
            return (f"Cancel job #{self.job_id}? {self.provider} cannot stop a render once it has started, so the "
                    f"{self.price} credits are still charged (nothing comes back). You will not get the video.")
        return (f"Cancel job #{self.job_id}? {self.provider} cannot stop a render once it has started: "
                f"{self.charge} of its {self.price} credits are charged, {self.price - self.charge} come back.")


@dataclass(frozen=True)
class CancelOutcome:
    job: Job
    stopped: bool
    refunded: int
    charged: int


@dataclass(frozen=True)
class CreditsView:
    """What /credits shows one user."""

    balance: int
    granted_today: int
    prices: PriceTable
    grants_from: float  # unix seconds: free credits start once the account is this old
    history: list[LedgerEntry]


class NoOwnKey(Exception):
    """`use_own_key` was asked for but the user has stored no key."""


class VideoService:
    def __init__(self, settings: Settings, store: Store, providers: ProviderRegistry, runner: JobRunner, *,
                 links: VideoLinks | None = None, encoder: media.Encoder | None = None) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.runner = runner  # secrets, file paths and the scheduler's wake-up, never through the poller
        # The same signer and bounded encoder delivery uses (one per process), so /job show and a reveal
        # neither mint other links nor run encodes past MEDIA_PARALLEL_ENCODES.
        self.links = links
        self.encoder = encoder or media.Encoder(settings.media_parallel_encodes)
        self.prepared_dir = settings.prepared_dir
        # Credits bought in Discord. One per process: it holds the subscriber cache that the ledger's daily
        # grant reads (store.policy.subscriber_daily), so the Store cog must not build its own.
        self.purchases = Purchases(store.ledger, settings.credit_pack_map(), settings.subscription_map(),
                                   store.policy.subscriber_daily)

    def video_link(self, job: Job) -> str | None:
        """A fresh signed link to the job's video when PUBLIC_BASE_URL is set, else the provider's own URL."""
        if self.links is not None and self.settings.public_base_url and job.result_path:
            return self.links.url(job.id)
        return job.result_url

    @contextlib.asynccontextmanager
    async def video_for_upload(self, path: Path, limit: int, work: str) -> AsyncIterator[media.Prepared | None]:
        """The video made postable for `limit` (as it is, remuxed or re-encoded), in a scratch folder `work`
        that is removed afterwards; None when the file cannot be read."""
        folder = self.prepared_dir / work
        try:
            try:
                prepared: media.Prepared | None = await self.encoder.prepare(path, folder, limit)
            except (media.MediaError, OSError):
                prepared = None
            yield prepared
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)

    def eta(self, request: AnyRequest) -> float:
        low, high = self.providers.for_model(request.model).expected_seconds(request)
        return (low + high) / 2

    async def create(
        self,
        requests: list[AnyRequest],
        origin: Invocation,
        *,
        reference_url: str | None = None,
        parent_job_id: int | None = None,
        compare: ComparePairing | None = None,
    ) -> Created:
        """Reserve credits and store one job per request (one transaction), then wake the scheduler.

        Raises storage's InsufficientCredits / ConcurrencyLimit / MemberDailyCap / DailySpendLimit, or
        NoOwnKey; nothing is charged then.
        """
        table = await current_prices(self.settings, self.store)
        new_jobs = []
        for request in requests:
            own_key = isinstance(request, SoraRequest) and request.use_own_key
            if own_key and await self.store.keys.get(origin.user_id, "openai") is None:
                raise NoOwnKey
            token = self.runner.seal_token(origin.token) if origin.token else None
            new_jobs.append(
                NewJob(
                    user_id=origin.user_id,
                    model=request.model.value,
                    provider=self.providers.name_for(request.model),
                    request_json=request.model_dump_json(),
                    price=request.price(table),
                    guild_id=origin.guild_id,
                    channel_id=origin.channel_id,
                    is_dm=origin.is_dm,
                    guild_installed=origin.guild_installed,
                    interaction_id=origin.interaction_id,
                    application_id=origin.application_id,
                    interaction_token=token,
                    token_expires_at=origin.expires_at,
                    upload_limit=origin.upload_limit,
                    reference_url=reference_url,
                    uses_own_key=own_key,
                    parent_job_id=parent_job_id,
                )
            )
        jobs, balance = await self.store.jobs.create_with_balance(new_jobs, now=time.time(), compare=compare,
                                                                  rules_guild_id=origin.rules_guild_id)
        if len(jobs) == 1:
            logcontext.bind(job_id=jobs[0].id)
        self.runner.wake()
        return Created(jobs=jobs, balance=balance)

    async def acknowledged(self, jobs: list[Job], *, card_message_id: int | None = None) -> None:
        """The command's answer (the card, `card_message_id`) went out: from now on workers may edit it.

        Discord refuses a webhook used before the interaction was acknowledged, and in the
        gateway/worker split a worker can reach a new job before the gateway has answered.
        """
        await self.store.jobs.acknowledge([job.id for job in jobs], card_message_id=card_message_id)

    def cancel_terms(self, job: Job) -> CancelTerms:
        """What a cancel of this job would cost, said before the user confirms (issue 12: no free renders)."""
        price = 0 if job.uses_own_key else job.price
        if job.state is JobState.ACCEPTED or not price:
            return CancelTerms(job.id, price, 0, stoppable=True, submitted=False)
        provider = self.providers.get(job.provider)
        if provider.can_cancel:
            return CancelTerms(job.id, price, 0, stoppable=True, submitted=True)
        charge = -(-price * self.settings.cancel_charge_percent // 100)
        return CancelTerms(job.id, price, charge, stoppable=False, submitted=True, provider=provider.name)

    async def cancel(self, job: Job) -> CancelOutcome:
        """Cancel an active job: a confirmed stop (or one before submission) is refunded in full; a render the
        provider cannot stop is charged CANCEL_CHARGE_PERCENT of its price (the ledger's settle key makes
        that exactly once). The card is updated through the outbox. Raises IllegalTransition if it ended."""
        current = await self.store.jobs.get(job.id)
        job = current or job
        terms = self.cancel_terms(job)
        stopped = False
        if job.provider_job_id and terms.stoppable:
            try:
                request = request_from_json(job.model, job.request_json)
                stopped = await self.providers.get(job.provider).cancel(
                    job.provider_job_id, JobContext(job_id=job.id, request=request))
            except Exception:
                # Not confirmed: charged like an unstoppable render below; the provider may still bill it.
                log.warning("job %s: cancel at %s failed", job.id, job.provider, exc_info=True)
                stopped = False
        charge = terms.charge
        if job.provider_job_id and terms.stoppable and not stopped:
            # The provider did not confirm: the render may go on, so it costs what an unstoppable one does.
            charge = -(-terms.price * self.settings.cancel_charge_percent // 100)
        reason = "canceled by the user" + (f"; {charge} credits charged (the provider could not stop the render)"
                                           if charge else "")
        job = await self.store.jobs.update(job.id, state=JobState.CANCELED, error_code="canceled",
                                           error_message=reason, notice=False, charge=charge)
        crash_point("after_cancel")
        if job.state is JobState.CANCELED and job.request_key and not job.provider_job_id:
            # Canceled during submission: the worker stops the provider's task once its id is known (or
            # finds it, if the submitting process died).
            await self.store.jobs.update(job.id, next_run_at=time.time())
        self.runner.wake()
        return CancelOutcome(job=job, stopped=stopped, refunded=terms.price - charge, charged=charge)

    def reference_for_rerun(self, job: Job) -> str | None:
        """A rerun reuses the parent's fitted first frame (the Discord URL may have expired)."""
        if not job.reference_url:
            return None
        return self.runner.reference_path(job.id).resolve().as_uri()

    # -- plain reads and writes for the cogs (the cogs' only way to the store) ---------------

    async def job(self, job_id: int) -> Job | None:
        return await self.store.jobs.get(job_id)

    async def jobs_for_user(self, user_id: int, *, limit: int = 10) -> list[Job]:
        return await self.store.jobs.for_user(user_id, limit=limit)

    async def prices(self) -> PriceTable:
        return await current_prices(self.settings, self.store)

    async def credits_view(self, user_id: int, *, history: int = 8) -> CreditsView:
        """Balance (applying a due grant), today's grant, prices and recent ledger entries."""
        return CreditsView(
            balance=await self.store.ledger.balance(user_id),
            granted_today=await self.store.ledger.granted_today(user_id),
            prices=await self.prices(),
            grants_from=self.store.policy.grants_from(user_id),
            history=await self.store.ledger.history(user_id, limit=history),
        )

    async def adjust_credits(self, user_id: int, amount: int, *, actor_id: int, key: str,
                             reason: str) -> tuple[bool, int]:
        """An audited grant or removal; `key` makes a retried command apply once. (applied, balance)."""
        return await self.store.ledger.adjust(user_id, amount, actor_id=actor_id, key=key, reason=reason)

    async def set_price(self, key: str, credits: int, *, actor_id: int) -> PriceTable:
        """Change one price (audited); the table now in force."""
        await self.store.prices.set(key, credits, actor_id=actor_id)
        return await self.prices()

    async def store_own_key(self, user_id: int, provider: str, key: str) -> None:
        """Keep a user's own API key, encrypted at rest."""
        await self.store.keys.put(user_id, provider, self.runner.seal_key(key))

    async def own_key_since(self, user_id: int, provider: str) -> float | None:
        """When the user's key was stored, or None; the key itself never leaves the store here."""
        stored = await self.store.keys.get(user_id, provider)
        return None if stored is None else stored[1]

    async def remove_own_key(self, user_id: int, provider: str) -> bool:
        return await self.store.keys.delete(user_id, provider)

    async def guild_rules(self, guild_id: int) -> GuildSettings:
        return await self.store.guilds.get(guild_id)

    async def update_guild_rules(self, guild_id: int, change: Callable[[GuildSettings], GuildSettings], *,
                                 actor_id: int) -> tuple[GuildSettings, list[SettingsChange]]:
        """Apply and audit a /settings change. Raises storage's SettingsError for an impossible one."""
        return await self.store.guilds.update(guild_id, change, actor_id=actor_id)

    async def guild_history(self, guild_id: int, *, limit: int = 5) -> list[SettingsChange]:
        return await self.store.guilds.history(guild_id, limit=limit)

    async def compare(self, compare_id: int) -> Compare | None:
        return await self.store.jobs.get_compare(compare_id)

    async def compare_jobs(self, compare_id: int) -> list[Job]:
        return await self.store.jobs.compare_jobs(compare_id)

    async def blind_until_vote(self, job: Job) -> Compare | None:
        """The blind /compare this job is half of, while its owner has not voted on it.

        Until then nothing the owner can open (/jobs, /job show) may tell which model made which clip:
        the model's name, its length or its sound would give the vote away. A pair that can no longer
        be voted on (a half failed or was canceled) hides nothing.
        """
        if job.compare_id is None:
            return None
        compare = await self.store.jobs.get_compare(job.compare_id)
        if compare is None or not compare.blind:
            return None
        pair = await self.store.jobs.compare_jobs(compare.id)
        if any(member.state in (JobState.FAILED, JobState.CANCELED) for member in pair):
            return None
        if await self.store.jobs.has_voted(compare.id, job.user_id):
            return None
        return compare

    async def vote(self, compare_id: int, voter_id: int, winner: str, *, guild_id: int | None) -> bool:
        """Record (or change) a vote; True when it is the voter's first on this pair."""
        return await self.store.jobs.vote(compare_id, voter_id, winner, guild_id=guild_id)

    async def vote_stats(self, guild_id: int | None = None) -> dict[str, int]:
        return await self.store.jobs.vote_stats(guild_id)
