"""The domain behind the commands: turn a validated request into a paid, stored, scheduled job.

Cogs call this with plain data (no discord objects), so the same path serves slash commands,
buttons (rerun, variation, render with Sora) and tests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bot import logcontext
from bot.config import Settings
from bot.faults import crash_point
from bot.poller import Poller
from bot.pricing import current_prices
from bot.providers.base import JobContext
from bot.providers.registry import ProviderRegistry
from bot.requests import AnyRequest, SoraRequest, request_from_json
from storage import Job, JobState, NewJob, Store

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


class NoOwnKey(Exception):
    """`use_own_key` was asked for but the user has stored no key."""


class VideoService:
    def __init__(self, settings: Settings, store: Store, providers: ProviderRegistry, poller: Poller) -> None:
        self.settings = settings
        self.store = store
        self.providers = providers
        self.poller = poller

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
        compare: tuple[bool, str] | None = None,
    ) -> Created:
        """Reserve credits and store one job per request (one transaction), then wake the poller.

        Raises storage's InsufficientCredits / ConcurrencyLimit / MemberDailyCap / DailySpendLimit, or
        NoOwnKey; nothing is charged then.
        """
        table = await current_prices(self.settings, self.store)
        new_jobs = []
        for request in requests:
            own_key = isinstance(request, SoraRequest) and request.use_own_key
            if own_key and await self.store.keys.get(origin.user_id, "openai") is None:
                raise NoOwnKey
            token = self.poller.secrets.encrypt_text(origin.token) if origin.token else None
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
        self.poller.wake()
        return Created(jobs=jobs, balance=balance)

    async def acknowledged(self, jobs: list[Job]) -> None:
        """The command's answer went out: from now on workers may edit it and send follow-ups.

        Discord refuses a webhook used before the interaction was acknowledged, and in the
        gateway/worker split a worker can reach a new job before the gateway has answered.
        """
        await self.store.jobs.acknowledge([job.id for job in jobs])

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
        self.poller.wake()
        return CancelOutcome(job=job, stopped=stopped, refunded=terms.price - charge, charged=charge)

    def reference_for_rerun(self, job: Job) -> str | None:
        """A rerun reuses the parent's fitted first frame (the Discord URL may have expired)."""
        if not job.reference_url:
            return None
        return self.poller.reference_path(job.id).resolve().as_uri()
