"""Posting finished videos (and failures, and progress) back to Discord.

Routes, in order: the channel itself when the bot may post there (guild install or the bot's own
DM), the card itself (the command's answer, edited into the result) while the interaction token
lives, then a DM. The MP4 is attached when it fits the upload limit of that route; a file over it is
re-encoded to fit first (bot/media.py), and every posted MP4 is fast-start H.264/AAC (remuxed when a
provider's is not). Only a file that cannot fit even re-encoded is linked instead. Channel and DM
posts carry the nonce `job<id>` with `enforce_nonce`, so a retry after a crash returns the message
already posted instead of a second one; the card route is an edit, the same however often it runs.

One message per job: a result (or failure notice) posted as its own message, next to the card,
retires the card (deleted: the owner's mention in the post is the ping, Midjourney's pattern);
where no post route exists the card is edited into the result instead.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import discord

from bot import media, ui
from bot.config import Settings
from bot.crypto import SecretBox
from bot.faults import crash_point
from bot.links import VideoLinks
from bot.providers.base import StatusResult
from bot.requests import request_from_json
from bot.runner import ComparePair, Delivered, DeliveryRetry
from storage import Compare, Job, JobState

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TOKEN_MARGIN = 60.0  # no webhook edit or delete starts in the token's last minute
PROGRESS_EVERY = 10.0
ACK_WAIT = 10.0  # how long a worker waits for a new job's answer to be recorded before skipping its webhook


@dataclass
class Attachment:
    path: Path
    name: str
    size: int
    link: str | None  # where to find it when it is over the upload limit
    reencoded: bool = False  # a smaller copy was attached: the link (if any) has the full quality


@dataclass
class Post:
    content: str
    embed: discord.Embed | None = None
    embeds: list[discord.Embed] = field(default_factory=list)  # several (a /compare's halves), after `embed`
    files: list[Attachment] = field(default_factory=list)
    view: discord.ui.View | None = None


@dataclass(frozen=True)
class BlindShape:
    seconds: float
    fps: Fraction
    size: tuple[int, int]


class Delivery:
    """The runner's Notifier, backed by a discord.py client: it posts, edits and deletes, and returns what it
    posted; the runner loads what it shows (a /compare pair included) and records every state."""

    def __init__(self, client: discord.Client, settings: Settings, secrets: SecretBox,
                 *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.settings = settings
        self.secrets = secrets
        self.clock = clock
        self.links = VideoLinks(secrets.subkey("video-links"), settings.public_base_url, settings.video_link_hours,
                                clock)
        self.encoder = media.Encoder(settings.media_parallel_encodes)
        self.prepared_dir = settings.prepared_dir

    # -- helpers -------------------------------------------------------------------------------

    def token_alive(self, job: Job) -> bool:
        """The interaction's webhook may be used: its answer is recorded (`acked_at`) and the token lives."""
        return bool(job.interaction_token and job.token_expires_at and job.acked_at is not None
                    and job.token_expires_at - self.clock() > TOKEN_MARGIN)

    def _webhook(self, job: Job) -> discord.Webhook | None:
        if not self.token_alive(job) or job.application_id is None or job.interaction_token is None:
            return None
        token = self.secrets.decrypt_text(job.interaction_token)
        return discord.Webhook.partial(job.application_id, token, client=self.client)

    @staticmethod
    def channel_reachable(job: Job) -> bool:
        """The bot may use the card's channel itself (guild install or its own DM), token or not."""
        return bool(job.channel_id and (job.guild_installed or job.is_dm))

    async def _card_message(self, job: Job) -> discord.PartialMessage | None:
        """The card through the channel API, for when the interaction token is dead (needs its recorded id)."""
        if not self.channel_reachable(job) or job.card_message_id is None:
            return None
        channel = await self._channel(job)
        get = getattr(channel, "get_partial_message", None)
        return get(job.card_message_id) if get is not None else None

    async def _edit_card(self, job: Job, fields: dict[str, Any]) -> discord.Message | None:
        """Edit the card: through the interaction's webhook (`@original`) while the token lives, otherwise
        through the channel by the card's id. None when the card can no longer be reached; Discord's
        refusals (HTTPException) go to the caller."""
        webhook = self._webhook(job)
        if webhook is not None:
            original: Any = "@original"  # discord.py types the id as int; Discord also accepts "@original"
            try:
                return await webhook.edit_message(original, **fields)
            except discord.HTTPException as error:
                if error.status != 401:  # 401: the token died on Discord's clock before ours; try the channel
                    raise
        message = await self._card_message(job)
        if message is None:
            return None
        return await message.edit(**fields)

    async def _delete_card(self, job: Job) -> None:
        """Delete the card (at least once: already gone counts as done). DeliveryRetry while Discord struggles."""
        webhook = self._webhook(job)
        try:
            if webhook is not None:
                original: Any = "@original"
                try:
                    await webhook.delete_message(original)
                    return
                except discord.HTTPException as error:
                    if error.status != 401:
                        raise
            message = await self._card_message(job)
            if message is None:
                log.info("job %s: the card can no longer be reached; left as it is", job.id)
                return
            await message.delete()
        except discord.NotFound:
            return  # already deleted (a retry after a crash, or the user removed it)
        except discord.HTTPException as error:
            if self._retryable(error):
                raise DeliveryRetry(f"Discord answered {error.status} on the card delete",
                                    retry_after=getattr(error, "retry_after", None)) from None
            log.info("job %s: card delete refused (%s %s)", job.id, error.status, error.code)

    def public_link(self, job: Job) -> str | None:
        """A signed link valid for VIDEO_LINK_HOURS when PUBLIC_BASE_URL is set (fresh on every call)."""
        if self.settings.public_base_url and job.result_path:
            return self.links.url(job.id)
        return job.result_url

    async def _channel(self, job: Job) -> discord.abc.Messageable | None:
        if job.channel_id is None:
            return None
        channel = self.client.get_channel(job.channel_id)
        if channel is None:
            try:
                channel = await self.client.fetch_channel(job.channel_id)
            except (discord.NotFound, discord.Forbidden):
                return None
        return channel if isinstance(channel, discord.abc.Messageable) else None

    @staticmethod
    def _channel_limit(channel: discord.abc.Messageable, job: Job) -> int:
        """The guild's limit, or the interaction's own figure for its channel when that is lower
        (Discord reports the exact per-channel limit in the interaction, the guild only its tier)."""
        guild = getattr(channel, "guild", None)
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        if job.upload_limit and getattr(channel, "id", None) == job.channel_id:
            limit = min(limit, job.upload_limit)
        return limit

    async def _fit(self, job: Job, post: Post, limit: int) -> Post:
        """The post with each file made postable for `limit`: as it is, remuxed, or re-encoded to fit.

        Derived files live in a per-job folder (reused if a crash makes us run twice) that
        `_forget_prepared` removes once the post is done.
        """
        if not post.files:
            return post
        fitted = []
        for item in post.files:
            try:
                prepared = await self.encoder.prepare(item.path, self.prepared_dir / f"job{job.id}", limit)
            except (media.MediaError, OSError) as error:
                log.warning("job %s: could not prepare %s (%s); posting it as it is", job.id, item.name, error)
                fitted.append(item)
                continue
            if prepared.action != "as-is":
                log.info("job %s: %s %s for a %d-byte limit (%d bytes, %dx%d)", job.id, item.name, prepared.action,
                         limit, prepared.size, prepared.width, prepared.height)
            fitted.append(replace(item, path=prepared.path, size=prepared.size,
                                  reencoded=item.reencoded or prepared.action == "re-encoded"))
        return replace(post, files=fitted)

    def _forget_prepared(self, job: Job) -> None:
        shutil.rmtree(self.prepared_dir / f"job{job.id}", ignore_errors=True)

    @staticmethod
    def _retryable(error: discord.HTTPException) -> bool:
        return error.status == 429 or error.status >= 500

    # -- the route walk --------------------------------------------------------------------------

    async def confirm_ack(self, job: Job) -> int | None:
        """Was the command answered though no ack was recorded (the gateway died between the two)? Ask
        Discord for the original response: its message id (the card, recorded with the ack so that it can be
        retired later) means the interaction's webhook may be used; None means no answer is known."""
        if (not job.interaction_token or job.application_id is None or not job.token_expires_at
                or job.token_expires_at - self.clock() <= TOKEN_MARGIN):
            return None
        webhook = discord.Webhook.partial(job.application_id, self.secrets.decrypt_text(job.interaction_token),
                                          client=self.client)
        original: Any = "@original"
        try:
            message = await webhook.fetch_message(original)
        except discord.HTTPException:
            return None
        return message.id

    def awaiting_ack(self, job: Job) -> bool:
        """The command's answer may still be on its way (the gateway records it right after sending)."""
        return bool(job.interaction_token and job.acked_at is None and self.clock() - job.created_at < ACK_WAIT)

    async def _send(self, job: Job, post: Post, *, nonce: str | None, skip_followup: bool = False,
                    on_route: Callable[[str], Awaitable[None]] | None = None) -> Delivered:
        """Try each route in order; raise DeliveryRetry when Discord itself is struggling.

        Routes: "channel" (a post with the nonce), "card" (the command's answer edited into the post:
        idempotent, and the job keeps one message), "dm" (a post with the nonce). `on_route` is told each
        route before it is tried. `skip_followup` is for outbox rows an older version recorded as tried by
        follow-up (a post without a nonce): then only the nonce-protected channel route is tried.
        """
        routes: list[str] = []
        if self.channel_reachable(job):
            routes.append("channel")
        elif self.awaiting_ack(job):  # the card route opens only once the answer is recorded
            raise DeliveryRetry("waiting for the command's answer to be recorded", retry_after=1.0)
        if skip_followup:
            routes = routes[:1]
        else:
            if self.token_alive(job):
                routes.append("card")
            routes.append("dm")
        notes = []
        for route in routes:
            if on_route is not None:
                await on_route(route)
            try:
                result = await self._send_via(route, job, post, nonce=nonce)
            except discord.HTTPException as error:
                if self._retryable(error):
                    raise DeliveryRetry(f"Discord answered {error.status} on {route}",
                                        retry_after=getattr(error, "retry_after", None)) from None
                log.info("job %s: %s route closed (%s %s)", job.id, route, error.status, error.code)
                notes.append(f"{route}: {error.code or error.status}")
                continue
            if result is not None:
                self._forget_prepared(job)
                return result
        self._forget_prepared(job)
        return Delivered(None, note="no route to the user (" + ", ".join(notes) + ")")

    async def _send_via(self, route: str, job: Job, post: Post, *, nonce: str | None) -> Delivered | None:
        if route == "channel":
            channel = await self._channel(job)
            if channel is None:
                return None
            return await self._send_messageable(channel, job, post, self._channel_limit(channel, job), nonce)
        if route == "card":
            if self._webhook(job) is None:
                return None
            limit = job.upload_limit or DEFAULT_UPLOAD_LIMIT
            post = await self._fit(job, post, limit)
            try:
                message = await self._edit_card(job, self._edit_fields(job, post, limit))
            except discord.HTTPException as error:
                if error.status != 413 or not post.files:
                    raise
                message = await self._edit_card(job, self._edit_fields(job, post, 0))
            if message is None:
                return None
            return Delivered(message.id, message.channel.id if message.channel else job.channel_id,
                             card_replaced=True)
        user = self.client.get_user(job.user_id) or await self.client.fetch_user(job.user_id)
        dm = await user.create_dm()
        return await self._send_messageable(dm, job, post, DEFAULT_UPLOAD_LIMIT, nonce)

    async def _send_messageable(self, channel: discord.abc.Messageable, job: Job, post: Post, limit: int,
                                nonce: str | None) -> Delivered:
        post = await self._fit(job, post, limit)
        try:
            message = await channel.send(nonce=nonce, **self._kwargs(job, post, limit))
        except discord.HTTPException as error:
            if error.status != 413 or not post.files:
                raise
            message = await channel.send(nonce=nonce, **self._kwargs(job, post, 0))
        return Delivered(message.id, message.channel.id)

    def _kwargs(self, job: Job, post: Post, limit: int) -> dict[str, Any]:
        """Message arguments; each file is attached when it fits `limit`, otherwise linked."""
        kwargs: dict[str, Any] = {"allowed_mentions": ui.only_user(job.user_id)}
        embeds = ([post.embed] if post.embed is not None else []) + post.embeds
        if embeds:
            kwargs["embeds"] = embeds
        if post.view is not None:
            kwargs["view"] = post.view
        lines = [post.content]
        files = []
        for item in post.files:
            if item.size <= limit:
                files.append(discord.File(item.path, filename=item.name))
                if item.reencoded and item.link:
                    lines.append(f"`{item.name}` was re-encoded to fit the upload limit; full quality: {item.link}")
            elif item.link:
                lines.append(f"`{item.name}` is {item.size / 1048576:.1f} MiB, over the upload limit: {item.link}")
            else:
                lines.append(f"`{item.name}` is {item.size / 1048576:.1f} MiB, over this channel's upload limit: "
                             f"use `/job show {job.id}` to get it.")
        kwargs["content"] = "\n".join(lines)
        if files:
            kwargs["files"] = files
        return kwargs

    def _edit_fields(self, job: Job, post: Post, limit: int) -> dict[str, Any]:
        """`_kwargs` as a message edit: the card's embeds and buttons are replaced (none left: no dead Cancel),
        its (no) attachments replaced by the post's files."""
        kwargs = self._kwargs(job, post, limit)
        return {"content": kwargs["content"], "embeds": kwargs.get("embeds", []),
                "attachments": kwargs.get("files", []), "view": kwargs.get("view"),
                "allowed_mentions": kwargs["allowed_mentions"]}

    # -- Notifier ------------------------------------------------------------------------------

    def _attachment(self, job: Job, name: str) -> Attachment | None:
        if not job.result_path or not Path(job.result_path).exists():
            return None
        size = job.result_bytes or Path(job.result_path).stat().st_size
        return Attachment(Path(job.result_path), name, size, self.public_link(job))

    async def deliver(self, job: Job, *, pair: ComparePair | None = None) -> Delivered:
        if job.compare_id is not None:
            if pair is None:
                return Delivered(None, note="comparison record missing")
            return await self._deliver_compare(job, pair)
        request = request_from_json(job.model, job.request_json)
        attachment = self._attachment(job, f"{job.model}-job{job.id}.mp4")
        if attachment is None and not self.public_link(job):
            return Delivered(None, note="the video file is gone")
        content = f"<@{job.user_id}> your {request.label} video is ready (job #{job.id})."
        if attachment is None:
            content += f" {self.public_link(job)}"
        embed = ui.job_embed(replace(job, state=JobState.DELIVERED), request)  # the result says Done
        embed.set_footer(text="↻ rerun · 🎲 variation" + (" · 🎬 final render with Sora" if job.model == "kling"
                                                         else ""))
        post = Post(content=content, embed=embed, files=[attachment] if attachment else [],
                    view=ui.result_view(job))
        # The card is retired by the outbox row written with DELIVERED (or was itself edited into the result).
        outcome = await self._send(job, post, nonce=f"job{job.id}")
        crash_point("after_post")
        return outcome

    async def _deliver_compare(self, job: Job, compare_pair: ComparePair) -> Delivered:
        """One message with both videos (A and B), posted when the second one is ready.

        A partner already DELIVERED was shown by an earlier try of this same post (a crash before this
        job was recorded): it is shown again, and the nonce returns the message already posted.
        """
        compare = compare_pair.compare
        partner = compare_pair.partner(job)
        if partner is not None and partner.state.active:
            return Delivered(None, waiting=True)
        pair = {j.model: j for j in (job, partner) if j is not None}
        shown = (JobState.DOWNLOADED, JobState.UNDELIVERED, JobState.DELIVERED)
        ready = {model: j for model, j in pair.items() if j.state in shown or j.id == job.id}
        files: list[Attachment] = []
        lines = []
        title = f"Blind compare #{compare.id}" if compare.blind else f"Kling vs Sora · compare #{compare.id}"
        embed = discord.Embed(title=title, colour=ui.SORA_COLOUR)
        first = request_from_json(job.model, job.request_json)
        embed.description = ui.quote(first.prompt)
        shape = await self._blind_shape(compare, ready) if compare.blind else None
        for slot in ("a", "b"):
            model = compare.model_in(slot)
            member = pair.get(model)
            request = request_from_json(member.model, member.request_json) if member else None
            if member is not None and model in ready:
                attachment = self._attachment(member, f"{slot.upper()}.mp4" if compare.blind
                                              else f"{slot.upper()}-{model}.mp4")
                if attachment is not None and shape is not None:
                    attachment = await self._blind_attachment(compare.id, slot, attachment, shape)
                if attachment is not None:
                    files.append(attachment)
                value = "revealed when you vote" if compare.blind else ui.options_line(request)  # type: ignore[arg-type]
            elif compare.blind:  # the reason could name the model
                value = "did not finish (refunded)"
            else:
                value = "failed (refunded)" if member is None else f"{member.state.value}: " + ui.failure_words(member)
            label = request.label if request else model
            name = f"Clip {slot.upper()}" if compare.blind else f"{slot.upper()} · {label}"
            embed.add_field(name=name, value=value, inline=True)
        if shape is not None and len(files) == 2:
            embed.set_footer(text=f"Both clips are {shape.seconds:.1f} s and silent, so only the picture counts. "
                                  "Vote to see which model made which, with the full clips.")
        lines.append(f"<@{job.user_id}> your comparison is ready: which is better?")
        view = discord.ui.View(timeout=None)
        if len(files) == 2:
            view.add_item(ui.VoteButton(compare.id, "a", "A is better"))
            view.add_item(ui.VoteButton(compare.id, "b", "B is better"))
        post = Post(content="\n".join(lines), embed=embed, files=files, view=view)
        try:
            outcome = await self._send(job, post, nonce=f"cmp{compare.id}")
        finally:
            shutil.rmtree(self.prepared_dir / f"cmp{compare.id}", ignore_errors=True)
        crash_point("after_post")
        if outcome.message_id is not None and partner is not None and partner.state is JobState.DOWNLOADED:
            outcome = replace(outcome, also_delivered=(partner.id,))  # the runner records it
        return outcome  # the shared card: retired through the outbox like a single job's

    async def _blind_shape(self, compare: Compare, ready: dict[str, Job]) -> BlindShape | None:
        """What both clips of a blind pair become: the shorter length (Kling 5 s vs Sora 4 s must not
        tell), the lower frame rate and the smaller frame size (models differ in those too)."""
        infos = []
        for member in ready.values():
            if member.result_path and Path(member.result_path).exists():
                try:
                    infos.append(await self.encoder.probe(Path(member.result_path)))
                except media.MediaError as error:
                    log.warning("compare %s: cannot read job %s's video (%s)", compare.id, member.id, error)
        if not infos:
            return None
        smallest = min(infos, key=lambda info: info.width * info.height)
        return BlindShape(min(info.duration for info in infos), min(info.fps for info in infos),
                          (smallest.width, smallest.height))

    async def _blind_attachment(self, compare_id: int, slot: str, attachment: Attachment,
                                shape: BlindShape) -> Attachment | None:
        """The clip in the pair's common shape, silent and untagged; never the original (it would tell)."""
        dest = self.prepared_dir / f"cmp{compare_id}" / f"{slot.upper()}.mp4"
        try:
            clip = await self.encoder.blind(attachment.path, dest, seconds=shape.seconds, fps=shape.fps,
                                            size=shape.size)
        except (media.MediaError, OSError) as error:
            log.warning("compare %s: blind clip %s failed (%s)", compare_id, slot, error)
            return None
        return Attachment(clip.path, attachment.name, clip.size, link=None)

    async def ended(self, job: Job, *, nonce: str, skip_followup: bool = False,
                    on_route: Callable[[str], Awaitable[None]] | None = None,
                    pair: ComparePair | None = None) -> int | None:
        """Tell the user a job failed or was canceled (at the provider, or timed out), and whether the credits
        came back, as ONE message: the notice (owner's mention, the final card) is posted next to the card,
        which is then deleted; where no post route exists the card itself becomes the notice; with the token
        dead and no channel access it goes by DM.

        Called from the outbox (at least once): the post carries `nonce`, the edit and the delete are
        idempotent. Raises DeliveryRetry while Discord is struggling; returns the notice's message id.
        """
        if job.compare_id is not None and pair is not None:
            return await self._ended_compare(job, pair, skip_followup=skip_followup, on_route=on_route)
        request = request_from_json(job.model, job.request_json)
        content = f"<@{job.user_id}> job #{job.id} ({request.label}) "
        content += "was canceled." if job.state is JobState.CANCELED else f"failed: {ui.failure_words(job)}"
        content += ui.settlement_words(job)
        post = Post(content=content, embed=self._final_embed(job, request))
        return await self._notice(job, post, nonce=nonce, skip_followup=skip_followup, on_route=on_route)

    async def _ended_compare(self, job: Job, compare_pair: ComparePair, *, skip_followup: bool,
                             on_route: Callable[[str], Awaitable[None]] | None) -> int | None:
        """A /compare half ended without a video. While its partner may still bring one, only the shared card
        changes (the pair's result shows the ended half); once both ended, the pair gets one notice."""
        compare_pair = compare_pair.with_job(job)
        jobs = list(compare_pair.jobs)
        if any(other.state not in (JobState.FAILED, JobState.CANCELED) for other in jobs if other.id != job.id):
            await self._edit_original(job, strict=True, pair=compare_pair)
            return None
        content = f"<@{job.user_id}> your comparison #{compare_pair.compare.id} ended: neither clip finished."
        paid = [other for other in jobs if other.price and not other.uses_own_key]
        if any(other.error_message and "credits charged" in other.error_message for other in paid):
            content += " A render that could not be stopped was charged; the rest was refunded."
        elif paid:
            content += f" Your {sum(other.price for other in paid)} credits were refunded."
        embeds, _ = self._card_embeds(job, jobs, compare_pair.compare)  # the final card: both halves, each why
        return await self._notice(job, Post(content=content, embeds=embeds),
                                  nonce=f"cmpend{compare_pair.compare.id}", skip_followup=skip_followup,
                                  on_route=on_route)

    async def _notice(self, job: Job, post: Post, *, nonce: str, skip_followup: bool,
                      on_route: Callable[[str], Awaitable[None]] | None) -> int | None:
        """Post the notice, then retire the card (a retry re-posts nothing: the nonce returns the message)."""
        outcome = await self._send(job, post, nonce=nonce, skip_followup=skip_followup, on_route=on_route)
        if outcome.message_id is not None and not outcome.card_replaced:
            await self._retire_card(job, outcome.channel_id, None)
        return outcome.message_id

    def _final_embed(self, job: Job, request: Any) -> discord.Embed:
        embed = ui.job_embed(job, request)
        if job.state in (JobState.FAILED, JobState.CANCELED):
            embed.colour = ui.ERROR_COLOUR
            if not ui.canceled_by_owner(job):  # the owner knows why; the status line says who and what it cost
                embed.add_field(name="Why", value=ui.failure_words(job), inline=False)
        return embed

    async def retire(self, job: Job, *, pair: ComparePair | None = None) -> None:
        """The outbox's `retire` row: the result is a message of its own, so the progress card goes."""
        await self._retire_card(job, job.delivered_channel_id, pair)

    async def _retire_card(self, job: Job, posted_in: int | None, pair: ComparePair | None) -> None:
        """Delete the card when the post sits next to it (same channel), else show the end on it (no buttons).

        A card whose answer was never recorded was first looked up at Discord (the runner's `_acked`): when
        Discord has none either (the process died before answering), there is no card to retire.
        """
        if posted_in is not None and posted_in == job.channel_id:
            await self._delete_card(job)
        else:
            await self._edit_original(job, strict=True, pair=pair)

    async def card(self, job: Job, *, pair: ComparePair | None = None) -> None:
        """Bring the command's answer up to date (no live Cancel button on an ended job); a cancel the owner
        pressed is shown in place: they are looking at the card."""
        await self._edit_original(job, strict=True, pair=pair)

    def last_chance(self, job: Job) -> bool:
        """This is the last edit a webhook-only card gets: the next look (`next_run_at`) falls past the point
        where the token may still be used, so the card must say now that the video will come by DM."""
        return bool(not self.channel_reachable(job) and job.token_expires_at and job.next_run_at
                    and self.token_alive(job) and job.next_run_at > job.token_expires_at - TOKEN_MARGIN)

    async def progress(self, job: Job, status: StatusResult, *, pair: ComparePair | None = None) -> bool:
        """Edit the card, at most every 10 s (through the channel once the token is dead, where allowed);
        a webhook-only card's last chance is always taken, with the explicit DM warning."""
        now = self.clock()
        last = self.last_chance(job)
        if not last and job.last_progress_edit_at is not None and now - job.last_progress_edit_at < PROGRESS_EVERY:
            return False
        return await self._edit_original(job, last=last, pair=pair)

    def _card_embeds(self, job: Job, jobs: list[Job], compare: Compare | None,
                     last: bool = False) -> tuple[list[discord.Embed], discord.ui.View | None]:
        """The card for `jobs` (one job, or both halves of a /compare: A first, cancel buttons naming their
        half, one neutral embed when blind). `last`: the card's last edit before its token ends."""
        now = max(self.clock(), job.token_expires_at or 0.0) if last else self.clock()
        if compare is not None and compare.blind:
            embeds = [ui.blind_compare_embed(jobs, compare.slot_a, compare_id=job.compare_id, now=now)]
            return embeds, ui.compare_cancel_view(jobs, compare.slot_a, blind=True)
        ordered = [shown for _, shown in ui.compare_slots(jobs, compare.slot_a)] if compare is not None else jobs
        embeds = []
        for index, shown in enumerate(ordered):
            request = request_from_json(shown.model, shown.request_json)
            embed = self._final_embed(shown, request) if not shown.state.active else ui.job_embed(
                shown, request, now=now if index == len(ordered) - 1 else None)
            if shown.state is JobState.DELIVERED and shown.delivered_channel_id not in (None, shown.channel_id):
                embed.add_field(name="Delivered", value=f"sent to <@{shown.user_id}> by DM", inline=False)
            embeds.append(embed)
        if compare is not None:
            return embeds, ui.compare_cancel_view(jobs, compare.slot_a, blind=False)
        view = discord.ui.View(timeout=None)
        for shown in jobs:
            if shown.state.active:
                view.add_item(ui.JobButton(shown.id, "cancel"))
        return embeds, view if view.children else None

    async def _edit_original(self, job: Job, *, strict: bool = False, last: bool = False,
                             pair: ComparePair | None = None) -> bool:
        """Show the job's state on the card (both jobs of a /compare share one card: `pair`).

        `strict`: raise DeliveryRetry when Discord is struggling (the outbox tries again later).
        `last`: the last edit a webhook-only card gets (it says the video will come by DM).
        """
        if self._webhook(job) is None and job.card_message_id is None:
            return False
        jobs = [job]
        compare = None
        if pair is not None:
            jobs = list(pair.with_job(job).jobs)
            compare = pair.compare
        embeds, view = self._card_embeds(job, jobs, compare, last)
        try:
            message = await self._edit_card(job, {"embeds": embeds, "view": view})
        except discord.HTTPException as error:
            if strict and self._retryable(error):
                raise DeliveryRetry(f"Discord answered {error.status} on the card edit",
                                    retry_after=getattr(error, "retry_after", None)) from None
            log.info("job %s: card edit refused (%s)", job.id, error.status)
            return False
        return message is not None
