"""/kling, /sora, /compare and /compare-stats, plus the buttons they post (rerun, variation, Sora, cancel, vote).

Thin by design: validate (pure, before anything is charged), reserve and store through the
service, answer within Discord's 3 seconds. Reference images are only *checked* here (type and
size from the attachment's metadata); the poller downloads them after the ack.

The buttons are built by bot/ui.py (delivery posts them too); the DynamicItems below answer their clicks on
any message, old or new, and are registered by the cog itself when it loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import discord
from discord import app_commands
from discord.ext import commands

from bot import catalogue, errors, logcontext, ui
from bot.faults import crash_point
from bot.images import ImageError, check_attachment
from bot.requests import (
    AnyRequest,
    KlingRequest,
    ModelName,
    RequestError,
    SoraRequest,
    kling_prompt_hint,
    parse_request,
    request_from_json,
)
from bot.service import (
    Compare,
    ComparePairing,
    ConcurrencyLimit,
    DailySpendLimit,
    InsufficientCredits,
    Job,
    MemberDailyCap,
    NoOwnKey,
)
from cogs._shared import ask_cancel, cancel_and_reply, guild_refusal, invocation, refuse, upload_limit
from cogs.store import buy_view

if TYPE_CHECKING:
    from bot.client import VideoBot

log = logging.getLogger(__name__)

Choice = app_commands.Choice
# Choices that depend on the catalogue are replaced when the cog loads (`Video._set_choices`); the
# decorator needs some list to make the option a choice option at all.
PLACEHOLDER = [Choice(name="(set from the catalogue)", value="-")]
PLACEHOLDER_INT = [Choice(name="(set from the catalogue)", value=0)]


class Video(commands.Cog):
    """Video generation commands."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self._set_choices()
        self.button_handlers = bound_handlers(self)

    async def cog_load(self) -> None:
        """Answer this cog's buttons, including those on messages posted before a restart."""
        self.bot.add_dynamic_items(*self.button_handlers)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*self.button_handlers)

    def _set_choices(self) -> None:
        """Slash choices from the catalogue: each family's enabled models on its configured provider."""
        books = catalogue.current()
        for command, family in ((self.kling, "kling"), (self.sora, "sora")):
            provider = self.bot.providers.name_for(ModelName(family))
            models = [spec for spec in books.enabled(family) if spec.provider_id(provider)]
            durations = sorted({seconds for spec in models for seconds in spec.durations})
            shapes = list(dict.fromkeys(shape for spec in models for shape in spec.shapes))
            default = books.default(family)
            _choices(command, "model", [Choice(name=_model_choice_name(spec, spec is default), value=spec.id)
                                        for spec in models])
            _choices(command, "duration", [Choice(name=f"{seconds} seconds", value=seconds) for seconds in durations])
            shape_option = default.shape_option
            _choices(command, shape_option, [Choice(name=_shape_name(default, shape), value=shape)
                                             for shape in shapes])
        short, long = _compare_pair("short"), _compare_pair("long")
        _choices(self.compare, "length", [
            Choice(name=f"short ({short[0].label} {short[1]} s, {short[2].label} {short[3]} s)", value="short"),
            Choice(name=f"long ({long[0].label} {long[1]} s, {long[2].label} {long[3]} s)", value="long"),
        ])

    # -- shared flow ---------------------------------------------------------------------------

    def _check_image(self, image: discord.Attachment | None) -> str | None:
        if image is None:
            return None
        check_attachment(image.content_type, image.size, self.bot.settings.reference_image_max_bytes,
                         width=image.width, height=image.height)
        return image.url

    async def _start(
        self,
        interaction: discord.Interaction,
        requests: list[AnyRequest],
        *,
        reference_url: str | None,
        parent_job_id: int | None = None,
        compare: ComparePairing | None = None,
        notes: list[str] | None = None,
        for_someone_else: bool = False,
    ) -> None:
        """Charge, store and acknowledge; every refusal is ephemeral and charges nothing.

        The acknowledgement is a public card without the balance, then an ephemeral receipt with the
        charge and balance for the invoker only (an HTTP call after the ack, no database write).
        """
        sora = any(isinstance(request, SoraRequest) for request in requests)
        if (reason := await guild_refusal(interaction, self.bot.service, sora=sora)) is not None:
            await refuse(interaction, reason)
            return
        try:
            created = await self.bot.service.create(
                requests, invocation(interaction), reference_url=reference_url, parent_job_id=parent_job_id,
                compare=compare,
            )
        except InsufficientCredits as short:
            buy = buy_view(self.bot.settings)  # premium buttons for the CREDIT_PACKS, if any are for sale
            if short.grants_from is not None:
                await refuse(interaction, f"This costs {short.price} credits but you have {short.balance}. "
                                          "Free credits start once your Discord account is "
                                          f"{_days(self.bot.settings.new_account_min_days)} old: "
                                          f"<t:{int(short.grants_from)}:f> (<t:{int(short.grants_from)}:R>).",
                             view=buy)
            else:
                await refuse(interaction, f"This costs {short.price} credits but you have {short.balance}. "
                                          "You get a daily grant; see `/credits`."
                                          + (" Or buy credits below." if buy else ""), view=buy)
            return
        except ConcurrencyLimit as cap:
            where = " in this server" if cap.guild else ""
            if cap.active < cap.cap:  # e.g. /compare needs two slots
                await refuse(interaction, f"This starts {len(requests)} videos at once but the limit{where} is "
                                          f"{cap.cap} (you have {cap.active} rendering).")
            else:
                await refuse(interaction, f"You already have {cap.active} video(s) rendering{where} (limit "
                                          f"{cap.cap}). Wait for one to finish, or stop one with `/job cancel`.")
            return
        except MemberDailyCap as cap:
            await refuse(interaction, f"This server's managers cap spending at {cap.cap} credits per member per "
                                      f"day; you have used {cap.spent} today and this costs {cap.price}. "
                                      "The cap resets at 00:00 UTC.")
            return
        except DailySpendLimit:
            await refuse(interaction, "The bot has reached its daily spending limit for everyone. New videos can be "
                                      "started again after 00:00 UTC. Nothing was charged.")
            return
        except NoOwnKey:
            await refuse(interaction, "`use_own_key` needs your OpenAI key: store it with `/openai-key set` first.")
            return
        crash_point("after_reserve")
        notes = list(notes or [])
        for request in requests:
            notes.extend(self.bot.providers.for_model(request.model).notes(request))
            if isinstance(request, KlingRequest) and (hint := kling_prompt_hint(request.prompt)):
                notes.append(hint)
        note = "\n".join(notes) or None
        if compare is not None and compare.blind:
            eta = max(self.bot.service.eta(request) for request in requests)
            embeds = [ui.blind_compare_embed(created.jobs, compare.slot_a, eta=eta, note=note)]
        else:
            embeds = [
                ui.job_embed(job, request, eta=self.bot.service.eta(request),
                             has_image=reference_url is not None, note=note if index == len(requests) - 1 else None)
                for index, (job, request) in enumerate(zip(created.jobs, requests, strict=True))
            ]
        if compare is not None:
            view = ui.compare_cancel_view(created.jobs, compare.slot_a, blind=compare.blind) or discord.ui.View()
        else:
            view = discord.ui.View(timeout=None)
            for job in created.jobs:
                view.add_item(ui.JobButton(job.id, "cancel"))
        # Later edits address this answer as @original; workers wait for this record before touching it. Its
        # message id (in Discord's callback answer, no extra request) goes into the same write: once the token
        # is dead, the card can still be deleted through the channel when the result is posted.
        answer = await interaction.response.send_message(embeds=embeds, view=view, allowed_mentions=ui.NO_MENTIONS)
        await self.bot.service.acknowledged(created.jobs, card_message_id=answer.message_id)
        try:
            await interaction.followup.send(
                ui.charge_words(created.jobs, created.balance, for_someone_else=for_someone_else),
                ephemeral=True, allowed_mentions=ui.NO_MENTIONS,
            )
        except discord.HTTPException as error:  # the job runs anyway; /credits shows the balance
            log.info("could not send the charge receipt for %s (%s)", [job.id for job in created.jobs], error)

    async def _single(self, interaction: discord.Interaction, model: str, image: discord.Attachment | None,
                      **options: Any) -> None:
        """Validate one model's options (pure, no I/O) and start the job, or refuse ephemerally."""
        try:
            request = parse_request(model, has_image=image is not None, **options)
            self._check_available(request)
            reference_url = self._check_image(image)
        except (RequestError, ImageError) as error:
            await refuse(interaction, error.message)
            return
        await self._start(interaction, [request], reference_url=reference_url)

    def _check_available(self, request: AnyRequest) -> None:
        """A model without an id at the configured provider cannot render here: say so before charging."""
        provider = self.bot.providers.name_for(request.model)
        if not request.spec.enabled or request.spec.provider_id(provider) is None:
            raise RequestError(f"{request.label} is not available on this bot (provider {provider}); "
                               "see `/models`.", "model")

    # -- commands ------------------------------------------------------------------------------

    @app_commands.command(name="kling", description="Kling video: quick and cheap; pick a model or take the default.")
    @app_commands.describe(
        prompt="What happens: one or two sentences about the subject and its movement",
        model="Which Kling model (see /models); options it does not take are refused",
        duration="Length in seconds",
        aspect_ratio="Frame shape",
        cfg_scale="0-1: higher sticks closer to the prompt; 0.3-0.5 gives more freedom (default 0.5)",
        negative_prompt="What to avoid, e.g. text overlays, watermarks, blurry footage",
        image="First frame (PNG, JPEG or WebP); cropped to the output size",
    )
    @app_commands.choices(model=PLACEHOLDER, duration=PLACEHOLDER_INT, aspect_ratio=PLACEHOLDER)
    async def kling(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        model: str | None = None,
        duration: int | None = None,
        aspect_ratio: str | None = None,
        cfg_scale: app_commands.Range[float, 0.0, 1.0] | None = None,
        negative_prompt: app_commands.Range[str, 1, 6000] | None = None,
        image: discord.Attachment | None = None,
    ) -> None:
        """Queue a Kling video (choices are set from the catalogue when the cog loads)."""
        await self._single(interaction, "kling", image, model_id=model, prompt=prompt, duration=duration,
                           aspect_ratio=aspect_ratio, cfg_scale=cfg_scale, negative_prompt=negative_prompt)

    @app_commands.command(name="sora", description="Sora video with synchronized audio; for finals.")
    @app_commands.describe(
        prompt="Detailed: subject, action, lighting, camera movement, mood",
        model="Which Sora model (see /models); options it does not take are refused",
        duration="Length in seconds",
        resolution="standard or high (models with a high tier; without a model, high picks one; costs more)",
        orientation="landscape 16:9 or portrait 9:16 (Sora has no square)",
        image="First frame (PNG, JPEG or WebP); cropped to the output size",
        use_own_key="Bill your own OpenAI account instead of credits (store it with /openai-key set)",
    )
    @app_commands.choices(
        model=PLACEHOLDER, duration=PLACEHOLDER_INT, orientation=PLACEHOLDER,
        resolution=[Choice(name="standard", value="standard"), Choice(name="high", value="high")],
    )
    async def sora(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        model: str | None = None,
        duration: int | None = None,
        resolution: str | None = None,
        orientation: str | None = None,
        image: discord.Attachment | None = None,
        use_own_key: bool = False,
    ) -> None:
        """Queue a Sora video (choices are set from the catalogue when the cog loads)."""
        await self._single(interaction, "sora", image, model_id=model, prompt=prompt, duration=duration,
                           resolution=resolution, orientation=orientation, use_own_key=use_own_key or None)

    @app_commands.command(name="compare", description="Render one prompt with Kling and Sora side by side, then vote.")
    @app_commands.describe(
        prompt="The prompt both models get",
        length="short or long: each default model's shortest or longest clip",
        orientation="landscape or portrait",
        image="First frame for both (PNG, JPEG or WebP)",
        blind="Hide which model made which video until you vote",
    )
    @app_commands.choices(
        length=[Choice(name="short", value="short"), Choice(name="long", value="long")],
        orientation=[Choice(name="landscape", value="landscape"), Choice(name="portrait", value="portrait")],
    )
    async def compare(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        length: str = "short",
        orientation: str = "landscape",
        image: discord.Attachment | None = None,
        blind: bool = False,
    ) -> None:
        """Queue a Kling and a Sora job for the same prompt; one message shows both."""
        try:
            if length not in ("short", "long"):
                raise RequestError("Length must be short or long.")
            if orientation not in ("landscape", "portrait"):
                raise RequestError("Orientation must be landscape or portrait.")
            kling_spec, kling_seconds, sora_spec, sora_seconds = _compare_pair(length)
            kling = parse_request("kling", has_image=image is not None, prompt=prompt, model_id=kling_spec.id,
                                  duration=kling_seconds, aspect_ratio=_shape_for(kling_spec, orientation))
            sora = parse_request("sora", has_image=image is not None, prompt=prompt, model_id=sora_spec.id,
                                 duration=sora_seconds, orientation=_shape_for(sora_spec, orientation))
            for request in (kling, sora):
                self._check_available(request)
            reference_url = self._check_image(image)
        except (RequestError, ImageError) as error:
            await refuse(interaction, error.message)
            return
        pair: list[AnyRequest] = [kling, sora]
        slot_a = "kling"
        if blind:
            # Random A/B and random creation order: neither the slot nor the lower job id is always Kling.
            pair = [request.model_copy(update={"blind": True}) for request in pair]
            random.shuffle(pair)
            slot_a = random.choice(("kling", "sora"))
        await self._start(interaction, pair, reference_url=reference_url, compare=ComparePairing(blind, slot_a))

    @app_commands.command(name="compare-stats", description="Community win rates of Kling vs Sora in /compare votes.")
    async def compare_stats(self, interaction: discord.Interaction) -> None:
        """Show win rates overall and in this server."""
        overall = await self.bot.service.vote_stats()
        embed = discord.Embed(title="Kling vs Sora: community votes", colour=ui.SORA_COLOUR)
        embed.add_field(name="Everywhere", value=_rates(overall), inline=False)
        if interaction.guild_id is not None:
            local = await self.bot.service.vote_stats(interaction.guild_id)
            embed.add_field(name="This server", value=_rates(local), inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    # -- buttons -------------------------------------------------------------------------------

    async def on_job_button(self, interaction: discord.Interaction, job_id: int, action: str) -> None:
        """Rerun, variation, render with Sora (each a new paid job, paid by whoever pressed), or cancel."""
        if action not in VIDEO_ACTIONS:
            await refuse(interaction, "This button is not handled here.")
            return
        job = await self.bot.service.job(job_id)
        if job is None:
            await refuse(interaction, "That job no longer exists.")
            return
        if action in ("cancel", "stop"):
            await self._cancel(interaction, job, confirmed=action == "stop")
            return
        request = request_from_json(job.model, job.request_json)
        reference = self.bot.service.reference_for_rerun(job)
        notes: list[str] = []
        if action == "vary":
            request = request.model_copy(update={"seed": random.randrange(2**31)})
            notes.append(f"Variation of job #{job.id} (new seed).")
        elif action == "sora":
            if not isinstance(request, KlingRequest):
                await refuse(interaction, "Only Kling results can be re-rendered with Sora.")
                return
            request, notes = kling_to_sora(request)
            notes.insert(0, f"Final render of Kling job #{job.id}.")
        else:
            notes.append(f"Rerun of job #{job.id}.")
        if not request.spec.enabled:  # retired (or deleted) since the original ran: new jobs may not use it
            family = request.model.value
            await refuse(interaction, f"{request.label} is no longer offered here; start a new video with "
                         f"`/{family}` (see `/models` for what is).")
            return
        someone_else = job.user_id != interaction.user.id
        if someone_else:  # public: name who pressed (never pings inside an embed), never their balance
            notes.append(f"Started by {interaction.user.mention}, who pays for it (not the original author).")
        await self._start(interaction, [request], reference_url=reference, parent_job_id=job.id, notes=notes,
                          for_someone_else=someone_else)

    async def _cancel(self, interaction: discord.Interaction, job: Job, *, confirmed: bool) -> None:
        """Cancel asks first (what it costs); the confirm button does it."""
        if job.user_id != interaction.user.id:
            await refuse(interaction, "Only the person who started this job can cancel it.")
            return
        if confirmed:
            await cancel_and_reply(interaction, self.bot.service, job)
        else:
            await ask_cancel(interaction, self.bot.service, job)

    async def on_vote(self, interaction: discord.Interaction, compare_id: int, slot: str) -> None:
        """Record a vote; after a blind vote, reveal which model was which (to the voter only)."""
        compare = await self.bot.service.compare(compare_id)
        if compare is None:
            await refuse(interaction, "That comparison no longer exists.")
            return
        winner = compare.model_in(slot)
        first = await self.bot.service.vote(compare_id, interaction.user.id, winner,
                                            guild_id=interaction.guild_id)
        verb = "Vote recorded" if first else "Vote changed"
        books = catalogue.current()  # /compare renders each family's default model
        labels = {family: books.default(family).label for family in catalogue.FAMILIES}
        if not compare.blind:
            await interaction.response.send_message(
                f"{verb}: you preferred {slot.upper()} ({labels[winner]}).", ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # the full clips may need fitting
        reveal = f" A was **{labels[compare.model_in('a')]}**, B was **{labels[compare.model_in('b')]}**."
        await self._reveal(interaction, compare,
                           f"{verb}: you preferred {slot.upper()} ({labels[winner]}).{reveal}")

    async def _reveal(self, interaction: discord.Interaction, compare: Compare, text: str) -> None:
        """After a blind vote: the full clips (own length, with sound), named by model, for the voter only."""
        limit = upload_limit(interaction)
        files: list[discord.File] = []
        lines = [text]
        jobs = {job.model: job for job in await self.bot.service.compare_jobs(compare.id)}
        async with contextlib.AsyncExitStack() as scratch:  # both prepared clips live until the answer is sent
            for slot in ("a", "b"):
                model = compare.model_in(slot)
                job = jobs.get(model)
                name = f"{slot.upper()}-{model}.mp4"
                if job is None or not job.result_path or not Path(job.result_path).exists():
                    lines.append(f"`{name}`: the full clip is no longer kept.")
                    continue
                prepared = await scratch.enter_async_context(self.bot.service.video_for_upload(
                    Path(job.result_path), limit, f"reveal{compare.id}-{interaction.user.id}-{slot}"))
                if prepared is not None and prepared.size <= limit:
                    files.append(discord.File(prepared.path, filename=name))
                elif link := self.bot.service.video_link(job):
                    lines.append(f"`{name}` is over the upload limit: {link}")
                else:
                    lines.append(f"`{name}` is over the upload limit: use `/job show {job.id}`.")
            await interaction.followup.send("\n".join(lines), files=files, ephemeral=True)


VIDEO_ACTIONS = ("rerun", "vary", "sora", "cancel", "stop")


class JobButtonHandler(discord.ui.DynamicItem[discord.ui.Button[Any]], template=ui.job_template(*VIDEO_ACTIONS)):
    """Answers `job:<id>:<action>` clicks for the Video cog; everything it needs is in the custom_id."""

    video: ClassVar[Video]  # set on the subclass bound to one loaded cog (`bound_handlers`)

    def __init__(self, item: discord.ui.Button[Any], job_id: int, action: str) -> None:
        super().__init__(item)
        self.job_id = job_id
        self.action = action

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button[Any],
                             match: re.Match[str], /) -> JobButtonHandler:
        return cls(item, int(match["id"]), match["action"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        errors.bind_interaction(interaction)
        logcontext.bind(job_id=self.job_id)
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self.video.on_job_button(interaction, self.job_id, self.action)
        except Exception as error:  # discord.py would only log it; the user would see "did not respond"
            await errors.report(interaction, error, f"the {self.action} button of job {self.job_id}")


class VoteButtonHandler(discord.ui.DynamicItem[discord.ui.Button[Any]], template=ui.VOTE_TEMPLATE):
    """Answers `cmp:<id>:vote:<slot>` clicks for the Video cog."""

    video: ClassVar[Video]

    def __init__(self, item: discord.ui.Button[Any], compare_id: int, slot: str) -> None:
        super().__init__(item)
        self.compare_id = compare_id
        self.slot = slot

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button[Any],
                             match: re.Match[str], /) -> VoteButtonHandler:
        return cls(item, int(match["id"]), match["slot"])

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        errors.bind_interaction(interaction)
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self.video.on_vote(interaction, self.compare_id, self.slot)
        except Exception as error:
            await errors.report(interaction, error, f"a vote on compare {self.compare_id}")


def bound_handlers(cog: Video) -> tuple[type[JobButtonHandler], type[VoteButtonHandler]]:
    """The handlers bound to one loaded cog: a typed reference, no lookup by name, and no global (each bot
    in a process, e.g. a test's restarted one, answers with its own cog)."""

    class BoundJobButton(JobButtonHandler, template=JobButtonHandler.__discord_ui_compiled_template__):
        video = cog

    class BoundVoteButton(VoteButtonHandler, template=VoteButtonHandler.__discord_ui_compiled_template__):
        video = cog

    return BoundJobButton, BoundVoteButton


def _days(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


def _rates(stats: dict[str, int]) -> str:
    total = stats["kling"] + stats["sora"]
    if not total:
        return "No votes yet: run `/compare` and vote."
    books = catalogue.current()
    kling, sora = books.family("kling").label, books.family("sora").label
    return (f"{kling}: {stats['kling']} ({stats['kling'] / total:.0%}) · "
            f"{sora}: {stats['sora']} ({stats['sora'] / total:.0%}) · {total} votes")


def _choices(command: app_commands.Command[Any, ..., Any], name: str, choices: list[Choice[Any]]) -> None:
    """Replace one parameter's choices on this cog's copy of the command (parameters are shared)."""
    params = command._params
    params[name] = dataclasses.replace(params[name], choices=choices[: catalogue.MAX_CHOICES])


def _model_choice_name(spec: catalogue.ModelSpec, default: bool) -> str:
    extras = [f"{'/'.join(str(d) for d in spec.durations)} s", "audio" if spec.audio else "silent"]
    if spec.high_sizes:
        extras.append("high tier")
    return f"{spec.label} ({', '.join(extras)})" + (" · default" if default else "")


def _shape_name(spec: catalogue.ModelSpec, shape: str) -> str:
    if spec.shape_option == "orientation":
        return shape
    width, height = spec.size(shape) if shape in spec.sizes else (1, 1)
    kind = "landscape" if width > height else "portrait" if height > width else "square"
    return f"{shape} {kind}"


def _shape_for(spec: catalogue.ModelSpec, orientation: str) -> str:
    """The model's shape option value for landscape / portrait (its first shape of that kind)."""
    for shape in spec.shapes:
        width, height = spec.size(shape)
        if (width > height) == (orientation == "landscape") and width != height:
            return shape
    raise RequestError(f"{spec.label} has no {orientation} format.")


def _compare_pair(length: str) -> tuple[catalogue.ModelSpec, int, catalogue.ModelSpec, int]:
    """/compare renders each family's default model at its shortest (short) or longest (long) duration."""
    books = catalogue.current()
    kling, sora = books.default("kling"), books.default("sora")
    pick = min if length == "short" else max
    return kling, pick(kling.durations), sora, pick(sora.durations)


def kling_to_sora(request: KlingRequest) -> tuple[SoraRequest, list[str]]:
    """Carry a Kling render over to the default Sora model; what Sora cannot take is dropped, and we say so."""
    books = catalogue.current()
    sora = books.default("sora")
    notes = []
    width, height = request.size
    orientation = "portrait" if height > width else "landscape"
    if width == height:
        notes.append(f"{sora.label} has no square format: rendered in landscape.")
    dropped = [name for name, used in (("CFG scale", request.cfg_scale is not None and not sora.cfg_scale),
                                       ("negative prompt", bool(request.negative_prompt) and not sora.negative_prompt))
               if used]
    if dropped:
        notes.append(f"{sora.label} does not use {' or '.join(dropped)}; dropped.")
    # The closest Sora length; on a tie the longer one (a 10 s Kling clip becomes 12 s, not 8 s).
    seconds = min(sora.durations, key=lambda option: (abs(option - request.duration), -option))
    prompt = request.prompt[: books.family("sora").prompt_max]
    escalated = SoraRequest(model_id=sora.id, prompt=prompt, duration=seconds,
                            orientation=_shape_for(sora, orientation), seed=request.seed)
    return escalated, notes


async def setup(bot: VideoBot) -> None:
    """Load the Video cog."""
    await bot.add_cog(Video(bot))
