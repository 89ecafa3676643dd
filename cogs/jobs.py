"""/jobs, /job show and /job cancel: a user's own jobs only; also the "Get result" button (`job:<id>:show`)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import discord
from discord import app_commands
from discord.ext import commands

from bot import errors, logcontext, media, ui
from bot.requests import request_from_json
from bot.service import Job, JobState
from cogs._shared import ask_cancel, refuse, upload_limit

if TYPE_CHECKING:
    from bot.client import VideoBot


class Jobs(commands.Cog):
    """Look up and cancel jobs."""

    job = app_commands.Group(name="job", description="One of your jobs")

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.button_handlers = bound_handlers(self)

    async def cog_load(self) -> None:
        """Answer "Get result" buttons, including those on messages posted before a restart."""
        self.bot.add_dynamic_items(*self.button_handlers)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*self.button_handlers)

    def _eta(self, job: Job) -> str:
        if not job.state.active:
            return ""
        request = request_from_json(job.model, job.request_json)
        remaining = self.bot.service.eta(request) - (time.time() - (job.submitted_at or job.created_at))
        return f" · ETA {ui.duration_words(remaining)}" if remaining > 0 else " · any moment"

    @app_commands.command(name="jobs", description="Your running and recent video jobs.")
    async def jobs(self, interaction: discord.Interaction) -> None:
        """List the caller's jobs, running first."""
        jobs = await self.bot.service.jobs_for_user(interaction.user.id, limit=10)
        if not jobs:
            await interaction.response.send_message("No jobs yet: try `/kling` or `/sora`.", ephemeral=True)
            return
        lines = []
        for job in jobs:
            request = request_from_json(job.model, job.request_json)
            if (compare := await self.bot.service.blind_until_vote(job)) is not None:
                # no model, progress or ETA: Sora's longer render would tell which clip is which
                state = ui.STATE_WORDS[job.state]
                lines.append(f"`#{job.id}` Blind compare #{compare.id} · {state} · {ui.quote(request.prompt, 50)}")
                continue
            progress = f" {job.progress}%" if job.progress is not None and job.state.active else ""
            prompt = ui.quote(request.prompt, 50)
            state = f"{ui.STATE_WORDS[job.state]}{progress}{self._eta(job)}"
            if ui.retrying_at(job) is not None:  # not "Queued · ETA 15 s" while it waits out the provider
                state = ui.status_words(job)
            lines.append(f"`#{job.id}` {request.label} · {state} · {prompt}")
        embed = discord.Embed(title="Your jobs", description="\n".join(lines), colour=ui.KLING_COLOUR)
        embed.set_footer(text="/job show id · /job cancel id")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    async def _own(self, interaction: discord.Interaction, job_id: int) -> Job | None:
        job = await self.bot.service.job(job_id)
        if job is None or job.user_id != interaction.user.id:
            await refuse(interaction, f"You have no job #{job_id}.")
            return None
        return job

    @job.command(name="show", description="Details of one of your jobs, with its video or link.")
    @app_commands.describe(id="The job number (see /jobs)")
    async def show(self, interaction: discord.Interaction, id: int) -> None:
        """Show a job; attach or link its video when there is one."""
        await self.show_job(interaction, id)

    async def show_job(self, interaction: discord.Interaction, job_id: int) -> None:
        """/job show and the "Get result" button: the caller's own job only, with its video or link."""
        job = await self._own(interaction, job_id)
        if job is None:
            return
        if (compare := await self.bot.service.blind_until_vote(job)) is not None:
            await refuse(interaction, f"Job #{job.id} is a clip of blind compare #{compare.id}: vote on the "
                         "comparison first (its ready message has the buttons); then this shows which model made "
                         "it, with the full video.")
            return
        request = request_from_json(job.model, job.request_json)
        embed = ui.job_embed(job, request, eta=self.bot.service.eta(request) if job.state.active else None,
                             private=True)  # an ephemeral answer to the owner: cost and key state are fine
        if job.state in (JobState.FAILED, JobState.CANCELED):
            embed.add_field(name="Why", value=ui.failure_words(job, private=True), inline=False)
        kwargs: dict = {"embed": embed, "ephemeral": True}
        path = Path(job.result_path) if job.result_path else None
        link = self.bot.service.video_link(job)
        if path is not None and path.exists() and await self._needs_work(path, upload_limit(interaction)):
            await self._show_prepared(interaction, job, path, embed, link)
            return
        if path is not None and path.exists():
            limit = upload_limit(interaction)
            if path.stat().st_size <= limit:
                kwargs["file"] = discord.File(path, filename=f"{job.model}-job{job.id}.mp4")
            elif link:
                embed.add_field(name="Video", value=link, inline=False)
            else:
                embed.add_field(name="Video", value="Too large to attach here and no public link is configured.",
                                inline=False)
        elif link:
            embed.add_field(name="Video", value=link, inline=False)
        await interaction.response.send_message(**kwargs)

    @staticmethod
    async def _needs_work(path: Path, limit: int) -> bool:
        """True when a remux or a re-encode would make the file postable here; False when it already is,
        cannot be read, or cannot fit even re-encoded (then it is attached or linked at once, as before)."""
        try:
            info = await asyncio.to_thread(media.probe, path)
        except (media.MediaError, OSError):
            return False
        if info.size <= limit and info.postable_codecs and info.faststart:
            return False
        if info.size > limit:
            try:
                media.plan_fit(info, limit)
            except media.MediaError:
                return False
        return True

    async def _show_prepared(self, interaction: discord.Interaction, job: Job, path: Path, embed: discord.Embed,
                             link: str | None) -> None:
        """Remux or re-encode the video to post it (can take longer than Discord's 3 s: deferred)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        limit = upload_limit(interaction)
        async with self.bot.service.video_for_upload(path, limit, f"show{job.id}-{interaction.id}") as prepared:
            name = f"{job.model}-job{job.id}.mp4"
            if prepared is not None and prepared.size <= limit:
                if prepared.action == "re-encoded" and link:
                    embed.add_field(name="Full quality", value=link, inline=False)
                await interaction.followup.send(embed=embed, file=discord.File(prepared.path, filename=name),
                                                ephemeral=True)
                return
            embed.add_field(name="Video", value=link or "Too large to attach here and no public link is configured.",
                            inline=False)
            await interaction.followup.send(embed=embed, ephemeral=True)

    @job.command(name="cancel", description="Stop one of your running jobs (asks first, and says what it costs).")
    @app_commands.describe(id="The job number (see /jobs)")
    async def cancel(self, interaction: discord.Interaction, id: int) -> None:
        """Say what canceling costs and offer the confirm button (handled by the Video cog)."""
        job = await self._own(interaction, id)
        if job is None:
            return
        await ask_cancel(interaction, self.bot.service, job)


class ShowButtonHandler(discord.ui.DynamicItem[discord.ui.Button[Any]], template=ui.job_template("show")):
    """Answers `job:<id>:show` ("Get result") clicks for the Jobs cog, as `/job show <id>` would."""

    jobs: ClassVar[Jobs]  # set on the subclass bound to one loaded cog (`bound_handlers`)

    def __init__(self, item: discord.ui.Button[Any], job_id: int) -> None:
        super().__init__(item)
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button[Any],
                             match: re.Match[str], /) -> ShowButtonHandler:
        return cls(item, int(match["id"]))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        errors.bind_interaction(interaction)
        logcontext.bind(job_id=self.job_id)
        return True

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await self.jobs.show_job(interaction, self.job_id)
        except Exception as error:  # discord.py would only log it; the user would see "did not respond"
            await errors.report(interaction, error, f"the Get result button of job {self.job_id}")


def bound_handlers(cog: Jobs) -> tuple[type[ShowButtonHandler]]:
    """The handler bound to one loaded cog (a typed reference, no lookup by name, no global)."""

    class BoundShowButton(ShowButtonHandler, template=ShowButtonHandler.__discord_ui_compiled_template__):
        jobs = cog

    return (BoundShowButton,)


async def setup(bot: VideoBot) -> None:
    """Load the Jobs cog."""
    await bot.add_cog(Jobs(bot))
