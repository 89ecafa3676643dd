"""What users see: embeds, plain-words errors and the persistent result buttons.

A button's `custom_id` carries the job id (`job:42:rerun`), so it keeps working after a restart with no
in-memory view; the cog that handles the action answers the click (a DynamicItem registered in its setup).
"""

from __future__ import annotations

import re
import string

import discord

from bot.requests import AnyRequest, KlingRequest, SoraRequest, request_from_json
from storage import Job, JobState

KLING_COLOUR = discord.Colour.from_rgb(0x2E, 0xB8, 0x72)
SORA_COLOUR = discord.Colour.from_rgb(0x58, 0x65, 0xF2)
ERROR_COLOUR = discord.Colour.red()
NO_MENTIONS = discord.AllowedMentions.none()


def only_user(user_id: int) -> discord.AllowedMentions:
    """Ping the job's owner and nobody else (prompts may contain @everyone)."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(user_id)])


MARKDOWN_SIGNIFICANT = frozenset(string.punctuation)  # all of ASCII's punctuation; Discord unescapes any of it


def quote(text: str, limit: int = 900) -> str:
    """Show a stranger's text verbatim: nothing in it renders as a link, heading, subtext, list, quote,
    spoiler, code, mention or emoji, and the result is at most `limit` characters.

    discord.py's `escape_markdown` is not enough (it escapes only the first masked link of a line
    and lets `-#` after a blank line through), so every ASCII punctuation character gets a
    backslash: Discord's markdown accepts `\\` before any of them and shows the character itself,
    and without a bare `:`, `/`, `<` or `@` no URL, mention or custom emoji can form. Truncation
    happens after escaping and never splits an escape.
    """
    pieces = ["\\" + ch if ch in MARKDOWN_SIGNIFICANT else ch for ch in text]
    if sum(len(piece) for piece in pieces) <= limit:
        return "".join(pieces)
    kept: list[str] = []
    used = 0
    for piece in pieces:
        if used + len(piece) > limit - 1:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + "…"


def duration_words(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{round(seconds / 60)} min"


def options_line(request: AnyRequest) -> str:
    if isinstance(request, KlingRequest):
        parts = [f"{request.duration} s", request.aspect_ratio, f"{request.size_text()}"]
        if request.cfg_scale is not None:
            parts.append(f"CFG {request.cfg_scale:g}")
        if request.has_audio:
            parts.append("audio")
        if request.negative_prompt:
            parts.append("negative prompt")
    else:
        assert isinstance(request, SoraRequest)
        # Billing to the user's own OpenAI key is not shown here: this line is on public cards.
        parts = [f"{request.duration} s", request.orientation, f"{request.resolution} ({request.size_text()})"]
        if request.has_audio:
            parts.append("audio")
    return " · ".join(parts)


def colour(request: AnyRequest) -> discord.Colour:
    return KLING_COLOUR if isinstance(request, KlingRequest) else SORA_COLOUR


STATE_WORDS = {
    JobState.ACCEPTED: "Queued",
    JobState.SUBMITTING: "Sending to the provider",
    JobState.SUBMITTED: "Waiting for the provider",
    JobState.RUNNING: "Rendering",
    JobState.DOWNLOADED: "Rendered, posting",
    JobState.DELIVERED: "Done",
    JobState.UNDELIVERED: "Rendered (not posted; see /job show)",
    JobState.FAILED: "Failed (refunded)",
    JobState.CANCELED: "Canceled",
}


def progress_bar(progress: int | None, width: int = 12) -> str:
    if progress is None:
        return ""
    filled = max(0, min(width, round(progress / 100 * width)))
    return "▰" * filled + "▱" * (width - filled) + f" {progress}%"


# Why a job waits for another try, by the error code the poller stores with the retry.
RETRY_WORDS = {
    "rate_limited": "provider busy",
    "transient": "provider unavailable",
    "internal": "temporary problem on our side",
}


def retrying_at(job: Job) -> float | None:
    """When a job that hit a retryable provider error runs again, or None if it is not waiting on a retry.

    The poller keeps the state (queued, rendering) and records the error code, `attempts` > 0 and
    `next_run_at`; a later successful step resets `attempts`, so a stale code is not mistaken for a retry.
    """
    if (job.state.active and job.attempts > 0 and job.error_code in RETRY_WORDS
            and job.next_run_at is not None):
        return job.next_run_at
    return None


def canceled_by_owner(job: Job) -> bool:
    """Canceled with the card's button or /job cancel (only the owner may), not at the provider or by a timeout."""
    return job.state is JobState.CANCELED and (job.error_message or "").startswith("canceled by the user")


def status_words(job: Job) -> str:
    """The card's Status value: what the job is doing now, honestly (a retry says when, not "Queued")."""
    when = retrying_at(job)
    if when is not None:
        return f"Retrying at <t:{int(when)}:T> ({RETRY_WORDS[job.error_code or '']})"
    if canceled_by_owner(job):  # public: who pressed, and whether it cost anything, never how much
        words = f"Canceled by <@{job.user_id}>"
        if job.price and not job.uses_own_key:
            words += " · charged (the render could not be stopped)" if "credits charged" in (
                job.error_message or "") else " · refunded"
        return words
    status = STATE_WORDS[job.state]
    bar = progress_bar(job.progress) if job.state in (JobState.SUBMITTED, JobState.RUNNING) else ""
    return f"{status} {bar}".strip()


DM_FALLBACK_FINAL = 300.0  # within this many seconds of the token's end, the card says it stops updating


def dm_fallback_words(job: Job, now: float | None = None) -> str | None:
    """For a card only the interaction's webhook can reach (a user install where the bot is not a member),
    what happens when the render outlasts Discord's 15-minute token: the card freezes, the video goes by DM.
    Said from the start, and explicitly in the last edits before the token's end. None for other cards."""
    if job.guild_installed or job.is_dm or not job.state.active or not job.token_expires_at:
        return None
    until = int(job.token_expires_at)
    if now is not None and job.token_expires_at - now <= DM_FALLBACK_FINAL:
        return f"This card stops updating <t:{until}:R> (Discord's 15-minute limit): your video will come to you by DM."
    return (f"Discord lets the bot update this card until <t:{until}:t>; if the video takes longer, "
            "it comes to you by DM.")


def cost_words(job: Job) -> str:
    """What the job costs its owner and how it is billed; private (own-key billing is the user's business)."""
    return "0 credits (your OpenAI key)" if job.uses_own_key else f"{job.price} credits"


def job_embed(job: Job, request: AnyRequest, *, eta: float | None = None, has_image: bool | None = None,
              note: str | None = None, private: bool = False, now: float | None = None) -> discord.Embed:
    """The embed of a job: request, owner, state; used for the ack, its progress edits and the result.

    Public by default, because cards sit in channels: it names the owner (a mention inside an embed
    never pings) and carries no balance, cost or key state. `private=True` is for ephemeral answers
    (/job show) and adds the cost and how it was billed. `has_image` defaults to whether the job has
    a reference image, so every card of a first-frame job, the result included, keeps the tag. A card only
    the interaction's webhook can reach says the video comes by DM past the token's life (`now`: the time of
    the edit, for the explicit last warning).
    """
    embed = discord.Embed(title=f"{request.label} · job #{job.id}", colour=colour(request),
                          description=quote(request.prompt))
    if has_image is None:
        has_image = bool(job.reference_url)
    line = options_line(request) + (" · first frame" if has_image else "")
    embed.add_field(name="Options", value=line, inline=False)
    embed.add_field(name="By", value=f"<@{job.user_id}>", inline=True)
    if private:
        embed.add_field(name="Cost", value=cost_words(job), inline=True)
    embed.add_field(name="Status", value=status_words(job), inline=True)
    if eta is not None and job.state.active and retrying_at(job) is None:
        embed.add_field(name="ETA", value=f"about {duration_words(eta)}", inline=True)
    if isinstance(request, KlingRequest) and request.negative_prompt:
        embed.add_field(name="Negative prompt", value=quote(request.negative_prompt, 500), inline=False)
    if note:
        embed.add_field(name="Note", value=note, inline=False)
    if not private and (fallback := dm_fallback_words(job, now)):
        embed.add_field(name="Delivery", value=fallback, inline=False)
    return embed


def compare_slots(jobs: list[Job], slot_a: str) -> list[tuple[str, Job]]:
    """The jobs of a /compare as (slot, job) in A, B order; `slot_a` is the model shown as A."""
    ordered = sorted(jobs, key=lambda job: job.model != slot_a)
    return list(zip(("A", "B"), ordered, strict=False))


def blind_compare_embed(jobs: list[Job], slot_a: str, *, eta: float | None = None, note: str | None = None,
                        compare_id: int | None = None, now: float | None = None) -> discord.Embed:
    """One neutral card for both halves of a blind /compare.

    No model names, no job ids, no per-clip price, length, sound or progress: Kling and Sora
    differ in all of these, so any of them would tell which clip is which before the vote.
    """
    requests = [request_from_json(job.model, job.request_json) for job in jobs]
    kling = next((r for r in requests if isinstance(r, KlingRequest)), None)
    length = "short" if kling is None or kling.duration == 5 else "long"
    orientation = "portrait" if kling is not None and kling.aspect_ratio == "9:16" else "landscape"
    title = "Blind compare" + (f" #{compare_id}" if compare_id is not None else "")
    embed = discord.Embed(title=title, colour=SORA_COLOUR, description=quote(requests[0].prompt if requests else ""))
    embed.add_field(name="Options", value=f"{length} · {orientation} · both clips trimmed to one length, "
                                          "silent until you vote", inline=False)
    if jobs:  # public card: who asked, never the cost or how it was billed (that is in the private receipt)
        embed.add_field(name="By", value=f"<@{jobs[0].user_id}>", inline=True)
    ready = sum(1 for job in jobs if job.state in (JobState.DOWNLOADED, JobState.DELIVERED, JobState.UNDELIVERED))
    ended = [slot for slot, job in compare_slots(jobs, slot_a) if job.state in (JobState.FAILED, JobState.CANCELED)]
    if any(job.state is JobState.DELIVERED for job in jobs):
        status = "Done: vote on the result"
    elif ended:
        status = f"Clip {' and '.join(ended)} ended (refunded)"
    elif ready == len(jobs):
        status = "Both clips rendered, posting"
    else:
        status = f"Rendering · {ready} of {len(jobs)} clips ready"
    embed.add_field(name="Status", value=status, inline=True)
    if eta is not None and any(job.state.active for job in jobs):
        embed.add_field(name="ETA", value=f"about {duration_words(eta)}", inline=True)
    if note:
        embed.add_field(name="Note", value=note, inline=False)
    fallback = next((words for job in jobs if (words := dm_fallback_words(job, now))), None)
    if fallback:
        embed.add_field(name="Delivery", value=fallback, inline=False)
    return embed


def compare_cancel_view(jobs: list[Job], slot_a: str, *, blind: bool) -> discord.ui.View | None:
    """Cancel buttons that say which half they stop.

    Blind: "Cancel A"/"Cancel B", both kept while either half runs (a button vanishing would show
    which model finished first). Otherwise each names its model and goes when its job ends.
    """
    view = discord.ui.View(timeout=None)
    running = any(job.state.active for job in jobs)
    for slot, job in compare_slots(jobs, slot_a):
        if blind and running:
            view.add_item(JobButton(job.id, "cancel", f"Cancel {slot}"))
        elif not blind and job.state.active:
            label = KlingRequest.label if job.model == "kling" else SoraRequest.label
            view.add_item(JobButton(job.id, "cancel", f"Cancel {label}"))
    return view if view.children else None


def settlement_words(job: Job) -> str:
    """What happened to the credits of a failed or canceled job, for its notice."""
    if job.uses_own_key or not job.price:
        return ""
    if job.error_message and "credits charged" in job.error_message:
        return " The render could not be stopped, so it was charged."
    return f" Your {job.price} credits were refunded."


def charge_words(jobs: list[Job], balance: int, *, for_someone_else: bool = False) -> str:
    """The invoker's private receipt for starting jobs: what was charged and the balance left.

    Sent only as an ephemeral follow-up; a balance never goes into a public message. Several jobs are
    a /compare: no job ids then, since their order would tell a blind compare's models apart.
    """
    # "video #N", not "job #N": notices and results are found by "job #N", and this one is only a receipt.
    what = f"video #{jobs[0].id}" if len(jobs) == 1 else "this comparison"
    credits = sum(job.price for job in jobs if not job.uses_own_key)
    own_key = sum(1 for job in jobs if job.uses_own_key)
    if own_key and not credits:
        text = f"Billed to your OpenAI key: no credits charged for {what}. Your balance: {balance} credits."
    else:
        text = f"Charged {credits} credits for {what}; your balance is now {balance} credits."
        if own_key:
            text += " The rest is billed to your OpenAI key."
    if for_someone_else:
        text += " You pay for this one, not the author of the original job."
    return text


def failure_words(job: Job, *, private: bool = False) -> str:
    """Why a job ended, in plain words for the user.

    Public by default (failure notices and cards are public): whether the job was billed to the
    user's own OpenAI key, and that the key was rejected, is said only when `private`.
    """
    code = job.error_code or ""
    model = job.provider_model or job.model
    provider_setting = "KLING_PROVIDER" if job.model == "kling" else "SORA_PROVIDER"
    variable = f"{provider_setting} or the model's provider_ids (MODELS_FILE)"
    messages = {
        "content_policy": "the provider's safety filter refused this prompt or image. Try rephrasing it.",
        "model_unavailable": f"the model `{model}` is no longer available at {job.provider}. "
        f"The bot's operator needs to change {variable}.",
        "quota_or_billing": "the bot's provider account is out of quota or credit; the operator must top it up.",
        "auth": ("your OpenAI key was rejected; store a working one with `/openai-key set`." if private
                 else f"the provider rejected the credentials; its owner can see why with `/job show {job.id}`.")
        if job.uses_own_key
        else "the provider rejected the bot's credentials; the operator must fix them.",
        "rate_limited": "the provider stayed too busy; please try again later.",
        "transient": "the provider was unavailable or too slow; please try again later.",
        "invalid_request": f"the provider refused the request ({job.error_message or 'no reason given'}).",
        "canceled": "it was canceled" + (f" ({job.error_message})." if job.error_message else "."),
    }
    return messages.get(code, job.error_message or "something went wrong on our side.")


# -- persistent buttons ----------------------------------------------------------------------------
# The custom_ids are a contract with every message already posted (`job:<id>:<action>`,
# `cmp:<id>:vote:<a|b>`): change them and the buttons on old cards stop working. This module only *builds*
# the buttons, so delivery can post them without importing cogs; the cog that handles an action registers a
# DynamicItem whose template matches its ids (cogs/video.py: rerun, variation, Sora, cancel, votes;
# cogs/jobs.py: get result).

ACTIONS = {
    "rerun": ("Rerun", "↻"),
    "vary": ("Variation", "🎲"),
    "sora": ("Render with Sora", "🎬"),
    "cancel": ("Cancel", "✖"),
    "stop": ("Yes, cancel it", "✖"),
    "show": ("Get result", "📥"),
}
VOTE_TEMPLATE = r"cmp:(?P<id>[0-9]+):vote:(?P<slot>[ab])"


def job_template(*actions: str) -> str:
    """The DynamicItem template for `job:<id>:<action>` ids with one of `actions` (each must be in ACTIONS)."""
    unknown = set(actions) - set(ACTIONS)
    if not actions or unknown:
        raise ValueError(f"unknown job button actions: {sorted(unknown)}")
    return rf"job:(?P<id>[0-9]+):(?P<action>{'|'.join(re.escape(action) for action in actions)})"


def job_custom_id(job_id: int, action: str) -> str:
    return f"job:{job_id}:{action}"


def vote_custom_id(compare_id: int, slot: str) -> str:
    return f"cmp:{compare_id}:vote:{slot}"


class PostedButton(discord.ui.Button[discord.ui.View]):
    """A button as posted; a click on it is answered by the cog's DynamicItem matching its custom_id.

    Not dispatchable on purpose: discord.py would otherwise keep the view of every card it sends in memory
    for the life of the process, only to find a button that does nothing when clicked.
    """

    def is_dispatchable(self) -> bool:
        return False


class JobButton(PostedButton):
    """A button acting on one job (`job:<id>:<action>`); its state lives in the custom_id and the store."""

    def __init__(self, job_id: int, action: str, label: str | None = None) -> None:
        default_label, emoji = ACTIONS[action]
        style = discord.ButtonStyle.danger if action in ("cancel", "stop") else discord.ButtonStyle.secondary
        if action == "sora":
            style = discord.ButtonStyle.primary
        super().__init__(label=label or default_label, emoji=emoji, style=style,
                         custom_id=job_custom_id(job_id, action))
        self.job_id = job_id
        self.action = action


class VoteButton(PostedButton):
    """A vote for one side of a compare (`cmp:<id>:vote:<slot>`)."""

    def __init__(self, compare_id: int, slot: str, label: str) -> None:
        super().__init__(label=label, emoji="👍", style=discord.ButtonStyle.success,
                         custom_id=vote_custom_id(compare_id, slot))
        self.compare_id = compare_id
        self.slot = slot


def confirm_cancel_view(job: Job) -> discord.ui.View:
    """The "Yes, cancel it" button under a cancel's price (ephemeral)."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(job.id, "stop"))
    return view


def result_view(job: Job) -> discord.ui.View:
    """Under a finished video: rerun, variation, and (for Kling) the final render with Sora."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(job.id, "rerun"))
    view.add_item(JobButton(job.id, "vary"))
    if job.model == "kling":
        view.add_item(JobButton(job.id, "sora"))
    return view


def running_view(job: Job) -> discord.ui.View:
    """Under a running job's card: its Cancel button."""
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(job.id, "cancel"))
    return view
