"""/kling, /sora, /compare and /compare-stats, plus the result buttons.

Thin by design: validate (pure, before anything is charged), reserve and store through the
service, answer within Discord's 3 seconds. Reference images are only *checked* here (type and
size from the attachment's metadata); the poller downloads them after the ack.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot import ui
from bot.faults import crash_point
from bot.images import ImageError, check_attachment
from bot.media import MediaError
from bot.requests import (
    AnyRequest,
    KlingRequest,
    RequestError,
    SoraRequest,
    kling_prompt_hint,
    parse_request,
    request_from_json,
)
from bot.service import NoOwnKey
from cogs._shared import cancel_and_reply, guild_refusal, invocation, refuse, upload_limit
from storage import Compare, ConcurrencyLimit, DailySpendLimit, InsufficientCredits, Job, MemberDailyCap

if TYPE_CHECKING:
    from bot.client import VideoBot

log = logging.getLogger(__name__)

Choice = app_commands.Choice


class Video(commands.Cog):
    """Video generation commands."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

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
        compare: tuple[bool, str] | None = None,
        notes: list[str] | None = None,
        for_someone_else: bool = False,
    ) -> None:
        """Charge, store and acknowledge; every refusal is ephemeral and charges nothing.

        The acknowledgement is a public card without the balance, then an ephemeral receipt with the
        charge and balance for the invoker only (an HTTP call after the ack, no database write).
        """
        sora = any(isinstance(request, SoraRequest) for request in requests)
        if (reason := await guild_refusal(interaction, self.bot.store, sora=sora)) is not None:
            await refuse(interaction, reason)
            return
        try:
            created = await self.bot.service.create(
                requests, invocation(interaction), reference_url=reference_url, parent_job_id=parent_job_id,
                compare=compare,
            )
        except InsufficientCredits as short:
            if short.grants_from is not None:
                await refuse(interaction, f"This costs {short.price} credits but you have {short.balance}. "
                                          "Free credits start once your Discord account is "
                                          f"{_days(self.bot.settings.new_account_min_days)} old: "
                                          f"<t:{int(short.grants_from)}:f> (<t:{int(short.grants_from)}:R>).")
            else:
                await refuse(interaction, f"This costs {short.price} credits but you have {short.balance}. "
                                          "You get a daily grant; see `/credits`.")
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
        if compare is not None and compare[0]:
            eta = max(self.bot.service.eta(request) for request in requests)
            embeds = [ui.blind_compare_embed(created.jobs, compare[1], eta=eta, note=note)]
        else:
            embeds = [
                ui.job_embed(job, request, eta=self.bot.service.eta(request),
                             has_image=reference_url is not None, note=note if index == len(requests) - 1 else None)
                for index, (job, request) in enumerate(zip(created.jobs, requests, strict=True))
            ]
        if compare is not None:
            view = ui.compare_cancel_view(created.jobs, compare[1], blind=compare[0]) or discord.ui.View()
        else:
            view = discord.ui.View(timeout=None)
            for job in created.jobs:
                view.add_item(ui.JobButton(job.id, "cancel"))
        # Later edits address this answer as @original, so nothing more is written on the hot path.
        await interaction.response.send_message(embeds=embeds, view=view, allowed_mentions=ui.NO_MENTIONS)
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
            request = parse_request(model, **options)
            reference_url = self._check_image(image)
        except (RequestError, ImageError) as error:
            await refuse(interaction, error.message)
            return
        await self._start(interaction, [request], reference_url=reference_url)

    # -- commands ------------------------------------------------------------------------------

    @app_commands.command(name="kling", description="Kling 2.0 video: 720p, 5 or 10 s, no audio; cheap and quick.")
    @app_commands.describe(
        prompt="What happens: one or two sentences about the subject and its movement",
        duration="Length in seconds",
        aspect_ratio="Frame shape",
        cfg_scale="0-1: higher sticks closer to the prompt; 0.3-0.5 gives more freedom (default 0.5)",
        negative_prompt="What to avoid, e.g. text overlays, watermarks, blurry footage",
        image="First frame (PNG, JPEG or WebP); cropped to the output size",
    )
    @app_commands.choices(
        duration=[Choice(name="5 seconds", value=5), Choice(name="10 seconds", value=10)],
        aspect_ratio=[Choice(name="16:9 landscape", value="16:9"), Choice(name="9:16 portrait", value="9:16"),
                      Choice(name="1:1 square", value="1:1")],
    )
    async def kling(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        duration: int = 5,
        aspect_ratio: str = "16:9",
        cfg_scale: app_commands.Range[float, 0.0, 1.0] = 0.5,
        negative_prompt: app_commands.Range[str, 1, 6000] | None = None,
        image: discord.Attachment | None = None,
    ) -> None:
        """Queue a Kling video."""
        await self._single(interaction, "kling", image, prompt=prompt, duration=duration,
                           aspect_ratio=aspect_ratio, cfg_scale=cfg_scale, negative_prompt=negative_prompt)

    @app_commands.command(name="sora", description="Sora 2 video: 4/8/12 s with synchronized audio; for finals.")
    @app_commands.describe(
        prompt="Detailed: subject, action, lighting, camera movement, mood",
        duration="Length in seconds",
        resolution="standard = 720p; high = 1024p on the pro model (costs more)",
        orientation="landscape 16:9 or portrait 9:16 (Sora has no square)",
        image="First frame (PNG, JPEG or WebP); cropped to the output size",
        use_own_key="Bill your own OpenAI account instead of credits (store it with /openai-key set)",
    )
    @app_commands.choices(
        duration=[Choice(name="4 seconds", value=4), Choice(name="8 seconds", value=8),
                  Choice(name="12 seconds", value=12)],
        resolution=[Choice(name="standard (720p)", value="standard"), Choice(name="high (1024p)", value="high")],
        orientation=[Choice(name="landscape", value="landscape"), Choice(name="portrait", value="portrait")],
    )
    async def sora(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        duration: int = 4,
        resolution: str = "standard",
        orientation: str = "landscape",
        image: discord.Attachment | None = None,
        use_own_key: bool = False,
    ) -> None:
        """Queue a Sora video."""
        await self._single(interaction, "sora", image, prompt=prompt, duration=duration, resolution=resolution,
                           orientation=orientation, use_own_key=use_own_key)

    @app_commands.command(name="compare", description="Render one prompt with Kling and Sora side by side, then vote.")
    @app_commands.describe(
        prompt="The prompt both models get",
        length="short: Kling 5 s / Sora 4 s; long: Kling 10 s / Sora 12 s",
        orientation="landscape or portrait",
        image="First frame for both (PNG, JPEG or WebP)",
        blind="Hide which model made which video until you vote",
    )
    @app_commands.choices(
        length=[Choice(name="short (Kling 5 s, Sora 4 s)", value="short"),
                Choice(name="long (Kling 10 s, Sora 12 s)", value="long")],
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
            kling = parse_request("kling", prompt=prompt, duration=5 if length == "short" else 10,
                                  aspect_ratio="16:9" if orientation == "landscape" else "9:16")
            sora = parse_request("sora", prompt=prompt, duration=4 if length == "short" else 12,
                                 orientation=orientation)
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
        await self._start(interaction, pair, reference_url=reference_url, compare=(blind, slot_a))

    @app_commands.command(name="compare-stats", description="Community win rates of Kling vs Sora in /compare votes.")
    async def compare_stats(self, interaction: discord.Interaction) -> None:
        """Show win rates overall and in this server."""
        overall = await self.bot.store.jobs.vote_stats()
        embed = discord.Embed(title="Kling vs Sora: community votes", colour=ui.SORA_COLOUR)
        embed.add_field(name="Everywhere", value=_rates(overall), inline=False)
        if interaction.guild_id is not None:
            local = await self.bot.store.jobs.vote_stats(interaction.guild_id)
            embed.add_field(name="This server", value=_rates(local), inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    # -- buttons -------------------------------------------------------------------------------

    async def on_job_button(self, interaction: discord.Interaction, job_id: int, action: str) -> None:
        job = await self.bot.store.jobs.get(job_id)
        if job is None:
            await refuse(interaction, "That job no longer exists.")
            return
        if action == "cancel":
            await self._cancel(interaction, job)
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
        someone_else = job.user_id != interaction.user.id
        if someone_else:  # public: name who pressed (never pings inside an embed), never their balance
            notes.append(f"Started by {interaction.user.mention}, who pays for it (not the original author).")
        await self._start(interaction, [request], reference_url=reference, parent_job_id=job.id, notes=notes,
                          for_someone_else=someone_else)

    async def _cancel(self, interaction: discord.Interaction, job: Job) -> None:
        if job.user_id != interaction.user.id:
            await refuse(interaction, "Only the person who started this job can cancel it.")
            return
        await cancel_and_reply(interaction, self.bot.service, job)

    async def on_vote(self, interaction: discord.Interaction, compare_id: int, slot: str) -> None:
        compare = await self.bot.store.jobs.get_compare(compare_id)
        if compare is None:
            await refuse(interaction, "That comparison no longer exists.")
            return
        winner = compare.model_in(slot)
        first = await self.bot.store.jobs.vote(compare_id, interaction.user.id, winner,
                                               guild_id=interaction.guild_id)
        verb = "Vote recorded" if first else "Vote changed"
        labels = {"kling": KlingRequest.label, "sora": SoraRequest.label}
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
        delivery = self.bot.delivery
        limit = upload_limit(interaction)
        work = delivery.prepared_dir / f"reveal{compare.id}-{interaction.user.id}"
        files: list[discord.File] = []
        lines = [text]
        try:
            jobs = {job.model: job for job in await self.bot.store.jobs.compare_jobs(compare.id)}
            for slot in ("a", "b"):
                model = compare.model_in(slot)
                job = jobs.get(model)
                name = f"{slot.upper()}-{model}.mp4"
                if job is None or not job.result_path or not Path(job.result_path).exists():
                    lines.append(f"`{name}`: the full clip is no longer kept.")
                    continue
                try:
                    prepared = await delivery.encoder.prepare(Path(job.result_path), work, limit)
                except MediaError:
                    prepared = None
                if prepared is not None and prepared.size <= limit:
                    files.append(discord.File(prepared.path, filename=name))
                elif link := delivery.public_link(job):
                    lines.append(f"`{name}` is over the upload limit: {link}")
                else:
                    lines.append(f"`{name}` is over the upload limit: use `/job show {job.id}`.")
            await interaction.followup.send("\n".join(lines), files=files, ephemeral=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _days(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


def _rates(stats: dict[str, int]) -> str:
    total = stats["kling"] + stats["sora"]
    if not total:
        return "No votes yet: run `/compare` and vote."
    return (f"Kling 2.0: {stats['kling']} ({stats['kling'] / total:.0%}) · "
            f"Sora 2: {stats['sora']} ({stats['sora'] / total:.0%}) · {total} votes")


def kling_to_sora(request: KlingRequest) -> tuple[SoraRequest, list[str]]:
    """Carry a Kling prompt over to Sora; Kling-only options are dropped, and we say so."""
    notes = []
    orientation = "portrait" if request.aspect_ratio == "9:16" else "landscape"
    if request.aspect_ratio == "1:1":
        notes.append("Sora has no square format: rendered in landscape.")
    dropped = [name for name, used in (("CFG scale", request.cfg_scale != 0.5),
                                       ("negative prompt", bool(request.negative_prompt))) if used]
    if dropped:
        notes.append(f"Sora does not use {' or '.join(dropped)}; dropped.")
    sora = SoraRequest(prompt=request.prompt[:4000], duration=4 if request.duration == 5 else 12,
                       orientation=orientation, seed=request.seed)
    return sora, notes


async def setup(bot: VideoBot) -> None:
    """Load the Video cog."""
    await bot.add_cog(Video(bot))
