"""Interactions both ways: what Discord's users do (commands, clicks, modal submits), sent to the bot as
INTERACTION_CREATE, and what the bot answers (callbacks, followups, edits of its answers), with Discord's
rules on both (3 s to acknowledge, one acknowledgement, 15 min tokens, at most 5 followups outside guilds).
"""

from __future__ import annotations

import io
import time
from typing import Any

from bot.sandbox.discord.constants import (
    ACK_WINDOW,
    BOT_PERMISSIONS,
    TOKEN_LIFETIME,
    USER_INSTALL_APP_PERMISSIONS,
    Callback,
    Channel,
    Component,
    Flag,
    IntegrationType,
    InteractionContext,
    Kind,
    Option,
)
from bot.sandbox.discord.gateway import Gateway
from bot.sandbox.discord.rules import (
    DiscordError,
    UploadedFile,
    invalid_form,
    modal_answer,
    typed_option,
    validate_message,
    validate_modal,
    walk_components,
)
from bot.sandbox.discord.world import Interaction, Payload, World, new_token


def image_dimensions(data: bytes, content_type: str) -> dict[str, int]:
    """Discord sends `width` and `height` with image attachments (read from the header here, not decoded)."""
    if not content_type.startswith("image/"):
        return {}
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # only the header is read
    try:
        with Image.open(io.BytesIO(data)) as image:
            return {"width": image.width, "height": image.height}
    except Exception:
        return {}
    finally:
        Image.MAX_IMAGE_PIXELS = limit


class Interactions:
    """Every interaction sent to the bot, by id, and the modals the bot showed (by custom_id)."""

    def __init__(self, world: World, gateway: Gateway) -> None:
        self.world = world
        self.gateway = gateway
        self.by_id: dict[int, Interaction] = {}
        self.modals: dict[str, Payload] = {}  # custom_id -> the last modal the bot showed with it

    # -- what users do -------------------------------------------------------------------------

    async def invoke(self, command: str, *, user: int, channel: int, options: dict[str, Any] | None = None,
                     attachments: dict[str, UploadedFile] | None = None, context: str | None = None) -> Interaction:
        """Fire a slash command as Discord would, typing each option from the command the bot registered.

        `command` may hold subcommands ("credits grant"); `context` ("guild", "dm", "user_install",
        "private_channel") is inferred from the channel when not given.
        """
        world = self.world
        parts = command.lstrip("/").split()
        guild_id = world.channels[channel].guild_id
        spec = world.find_command(parts[0], guild_id)
        options = dict(options or {})
        attachments = dict(attachments or {})
        resolved: dict[str, Any] = {}
        leaf_specs = spec.get("options", [])
        nested: list[Payload] = []
        container = nested
        for part in parts[1:]:
            sub = next((o for o in leaf_specs if o["name"] == part and o["type"] in Option.SUBCOMMANDS), None)
            if sub is None:
                raise KeyError(f"/{parts[0]} has no subcommand {part!r}")
            node: Payload = {"name": part, "type": sub["type"], "options": []}
            container.append(node)
            container = node["options"]
            leaf_specs = sub.get("options", [])
        if any(o["type"] in Option.SUBCOMMANDS for o in leaf_specs):
            raise KeyError(f"/{command} needs a subcommand: {[o['name'] for o in leaf_specs]}")
        for name, value in options.items():
            option = next((o for o in leaf_specs if o["name"] == name), None)
            if option is None:
                raise KeyError(f"/{command} has no option {name}")
            if option["type"] == Option.ATTACHMENT:
                raise ValueError(f"give attachment option {name!r} through attachments=")
            container.append({"name": name, "type": option["type"], "value": typed_option(option["type"], value)})
            if option["type"] in Option.SNOWFLAKES:
                self._resolve(option["type"], int(value), guild_id, resolved)
        for name, (filename, data, content_type) in attachments.items():
            option = next((o for o in leaf_specs if o["name"] == name), None)
            if option is None or option["type"] != Option.ATTACHMENT:
                raise KeyError(f"/{command} has no attachment option {name}")
            attachment_id = world.store_file(data, content_type, filename)
            container.append({"name": name, "type": Option.ATTACHMENT, "value": str(attachment_id)})
            url = world.attachment_url(attachment_id, filename)
            resolved.setdefault("attachments", {})[str(attachment_id)] = {
                "id": str(attachment_id), "filename": filename, "size": len(data), "content_type": content_type,
                "url": url, "proxy_url": url, "ephemeral": True, **image_dimensions(data, content_type),
            }
        missing = [o["name"] for o in leaf_specs if o.get("required") and o["name"] not in options
                   and o["name"] not in attachments]
        if missing:
            raise KeyError(f"/{command} is missing required options {missing}")
        data = {"id": spec["id"], "name": parts[0], "type": spec.get("type", 1), "options": nested}
        if resolved:
            data["resolved"] = resolved
        return await self._fire(Kind.COMMAND, data, user=user, channel=channel, context=context,
                                name=" ".join(parts))

    def _resolve(self, option_type: int, value: int, guild_id: int | None, resolved: dict[str, Any]) -> None:
        """Fill `data.resolved` for user/channel/mentionable options, as Discord sends the objects along."""
        world = self.world
        if option_type in (Option.USER, Option.MENTIONABLE) and value in world.users:
            resolved.setdefault("users", {})[str(value)] = world.users[value]
            if guild_id is not None:
                member = world.member_payload(guild_id, value)
                member.pop("user")
                resolved.setdefault("members", {})[str(value)] = member | {"permissions": "0"}
        elif option_type == Option.ROLE and guild_id is not None:
            role = next((r for r in world.extra_roles_payload(guild_id) if r["id"] == str(value)), None)
            if role is not None:
                resolved.setdefault("roles", {})[str(value)] = role
        elif option_type == Option.CHANNEL and value in world.channels:
            channel = world.channel_payload(value)
            resolved.setdefault("channels", {})[str(value)] = {
                "id": channel["id"], "type": channel["type"], "name": channel.get("name"), "permissions": "0",
                **({"guild_id": channel["guild_id"]} if "guild_id" in channel else {})}

    async def click(self, message: Payload, custom_id: str, *, user: int,
                    values: list[str] | None = None) -> Interaction:
        """Press a button (by custom_id or label) or pick `values` in a select, anywhere in the message's tree."""
        found = next((c for c in walk_components(message.get("components") or [])
                      if c.get("custom_id") == custom_id or (c.get("label") == custom_id and c.get("custom_id"))),
                     None)
        if found is None:
            raise KeyError(f"no component {custom_id!r} on message {message['id']}")
        if found.get("disabled"):
            raise KeyError(f"component {custom_id!r} is disabled")  # nothing clickable by that name
        data: Payload = {"custom_id": found["custom_id"], "component_type": found["type"]}
        if found["type"] != Component.BUTTON:
            data["values"] = list(values or [])
        return await self._fire(Kind.COMPONENT, data, user=user, channel=int(message["channel_id"]), message=message)

    async def submit_modal(self, custom_id: str, values: dict[str, Any], *, user: int, channel: int) -> Interaction:
        """Submit a modal the bot showed, answering its fields by custom_id in the modal's own layout."""
        modal = self.modals.get(custom_id)
        if modal is None:
            components = [{"type": Component.ACTION_ROW, "components": [
                {"type": Component.TEXT_INPUT, "custom_id": key, "value": value}]} for key, value in values.items()]
        else:
            components = [modal_answer(component, values) for component in modal.get("components") or []]
        return await self._fire(Kind.MODAL_SUBMIT, {"custom_id": custom_id, "components": components}, user=user,
                                channel=channel)

    def _context(self, channel_id: int) -> str:
        channel = self.world.channels[channel_id]
        if channel.type == Channel.DM:
            return "dm"
        if channel.type == Channel.GROUP_DM:
            return "private_channel"
        assert channel.guild_id is not None
        return "guild" if self.world.guilds[channel.guild_id].bot_member else "user_install"

    async def _fire(self, kind: int, data: Payload, *, user: int, channel: int, context: str | None = None,
                    name: str | None = None, message: Payload | None = None) -> Interaction:
        world = self.world
        channel_state = world.channels[channel]
        guild_id = channel_state.guild_id
        context = context or self._context(channel)
        upload_limit = world.upload_limit(guild_id)
        interaction = Interaction(id=world.new_id(), token=new_token(), type=kind, user_id=user, channel_id=channel,
                                  guild_id=guild_id, created_at=world.clock(), name=name, context=context,
                                  upload_limit=upload_limit)
        payload: Payload = {
            "id": str(interaction.id), "application_id": str(world.app_id), "type": kind, "token": interaction.token,
            "version": 1, "data": data, "locale": "en-US", "entitlements": [],
            "attachment_size_limit": upload_limit, "channel_id": str(channel),
            "channel": world.channel_payload(channel),
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            payload["guild_locale"] = "en-US"
            payload["guild"] = {"id": str(guild_id), "locale": "en-US", "features": []}
            perms = world.member_permissions(guild_id, user)
            payload["member"] = world.member_payload(guild_id, user) | {"permissions": str(perms)}
            payload["context"] = InteractionContext.GUILD
            if context == "user_install":
                payload["authorizing_integration_owners"] = {str(IntegrationType.USER_INSTALL.value): str(user)}
                payload["app_permissions"] = str(USER_INSTALL_APP_PERMISSIONS)
            else:
                payload["authorizing_integration_owners"] = {str(IntegrationType.GUILD_INSTALL.value): str(guild_id)}
                payload["app_permissions"] = str(BOT_PERMISSIONS & ~world.bot_denied(channel_state))
        else:
            payload["user"] = world.users[user]
            payload["context"] = (InteractionContext.PRIVATE_CHANNEL if channel_state.type == Channel.GROUP_DM
                                  else InteractionContext.BOT_DM)
            payload["authorizing_integration_owners"] = {str(IntegrationType.USER_INSTALL.value): str(user)}
            payload["app_permissions"] = str(BOT_PERMISSIONS)
        if message is not None:
            payload["message"] = message
        interaction.payload = payload
        self.by_id[interaction.id] = interaction
        interaction.sent_at = time.perf_counter()
        await self.gateway.broadcast("INTERACTION_CREATE", payload)
        return interaction

    # -- what the bot answers ------------------------------------------------------------------

    def by_token(self, token: str) -> Interaction:
        for interaction in self.by_id.values():
            if interaction.token == token:
                if self.world.clock() - interaction.created_at > TOKEN_LIFETIME:
                    raise DiscordError(401, 50027, "Invalid Webhook Token")
                return interaction
        raise DiscordError(404, 10015, "Unknown Webhook")

    def callback(self, interaction_id: int, token: str, body: Payload, files: list[UploadedFile]) -> Payload:
        """The bot's one acknowledgement; returns what `?with_response=true` answers."""
        world = self.world
        interaction = self.by_id.get(interaction_id)
        if interaction is None or interaction.token != token:
            raise DiscordError(404, 10062, "Unknown interaction")
        if interaction.response_type is not None:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if world.clock() - interaction.created_at > ACK_WINDOW:
            interaction.error = "late"
            raise DiscordError(404, 10062, "Unknown interaction")
        kind = int(body.get("type") or 0)
        data = body.get("data") or {}
        if kind not in Callback.ALLOWED:
            allowed = ", ".join(str(value) for value in sorted(Callback.ALLOWED))
            raise invalid_form({"type": f"Value must be one of {{{allowed}}}."})
        if kind in (Callback.DEFERRED_UPDATE, Callback.UPDATE) and "message" not in interaction.payload:
            raise invalid_form({"type": "Interaction callback type invalid."})
        if kind == Callback.MODAL and interaction.type == Kind.MODAL_SUBMIT:
            raise invalid_form({"type": "A modal cannot answer a modal."})
        message = None
        if kind in (Callback.MESSAGE, Callback.DEFERRED_MESSAGE):
            loading = kind == Callback.DEFERRED_MESSAGE
            message = world.new_message(interaction.channel_id,
                                        {"flags": int(data.get("flags") or 0)} if loading else data, files,
                                        limit=interaction.upload_limit, author=world.bot_user,
                                        interaction=interaction, loading=loading)
            interaction.original_message_id = int(message["id"])
        elif kind in (Callback.DEFERRED_UPDATE, Callback.UPDATE):
            original = world.find_message(int(interaction.payload["message"]["id"]))
            interaction.original_message_id = int(original["id"])
            if kind == Callback.UPDATE:
                message = world.edit_message(original, data, files, limit=interaction.upload_limit)
        else:
            validate_modal(data.get("components") or [])
            interaction.modal = data
            self.modals[str(data.get("custom_id"))] = data
            world.events.publish({"type": "modal", "user_id": str(interaction.user_id), "data": data,
                                  "channel_id": str(interaction.channel_id)})
        interaction.response_type = kind
        interaction.acked_at = time.perf_counter()
        interaction.response = data
        interaction.responded.set()
        world.events.publish({"type": "interaction_response", "interaction_id": str(interaction.id), "kind": kind})
        reply: Payload = {"interaction": {
            "id": str(interaction.id), "type": interaction.type, "activity_instance_id": None,
            "response_message_id": message["id"] if message else None,
            "response_message_loading": kind == Callback.DEFERRED_MESSAGE,
            "response_message_ephemeral": bool(int(data.get("flags") or 0) & Flag.EPHEMERAL),
        }}
        if message is not None:
            reply["resource"] = {"type": kind, "message": message}
        elif kind in (Callback.DEFERRED_UPDATE, Callback.MODAL):
            reply["resource"] = {"type": kind}
        return reply

    def followup(self, token: str, body: Payload, files: list[UploadedFile]) -> Payload:
        interaction = self.by_token(token)
        if interaction.response_type is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        if interaction.context != "guild" and len(interaction.followups) >= 5:
            raise DiscordError(400, 40094, "This interaction has hit the maximum number of follow up messages")
        message = self.world.new_message(interaction.channel_id, body, files, limit=interaction.upload_limit,
                                         author=self.world.bot_user, interaction=interaction)
        interaction.add_followup(int(message["id"]))
        return message

    def webhook_message(self, token: str, message_id: str) -> tuple[Interaction, Payload]:
        """The interaction's original answer (`@original`) or one of its messages."""
        interaction = self.by_token(token)
        target = interaction.original_message_id if message_id == "@original" else int(message_id)
        if target is None:
            raise DiscordError(404, 10008, "Unknown Message")
        return interaction, self.world.find_message(target)

    def edit_webhook_message(self, token: str, message_id: str, body: Payload, files: list[UploadedFile]) -> Payload:
        interaction, message = self.webhook_message(token, message_id)
        validate_message(body, files, interaction.upload_limit)
        return self.world.apply_edit(message, body, files)
