"""Builds providers from configuration, one instance per provider name.

Jobs remember which provider they were sent to, so a job submitted before the operator switched
`KLING_PROVIDER` is still polled where it lives.
"""

from __future__ import annotations

import importlib

from bot.config import Settings
from bot.providers.base import VideoProvider
from bot.requests import ModelName

# provider name -> (module, class)
PROVIDER_CLASSES: dict[str, tuple[str, str]] = {
    "simulated": ("bot.providers.simulated", "SimulatedProvider"),
    "replicate": ("bot.providers.replicate", "ReplicateProvider"),
    "openai": ("bot.providers.openai_videos", "OpenAIVideosProvider"),
    "kling": ("bot.providers.kling", "KlingProvider"),
}


def provider_class(name: str) -> type[VideoProvider]:
    """The adapter class for a provider name, without building (or configuring) an instance."""
    if name not in PROVIDER_CLASSES:
        raise KeyError(f"unknown provider {name!r}")
    module_name, class_name = PROVIDER_CLASSES[name]
    cls: type[VideoProvider] = getattr(importlib.import_module(module_name), class_name)
    return cls


class ProviderRegistry:
    """The providers of one process."""

    def __init__(self, settings: Settings, *, instances: dict[str, VideoProvider] | None = None) -> None:
        self.settings = settings
        self._instances: dict[str, VideoProvider] = dict(instances or {})

    def name_for(self, model: ModelName) -> str:
        return self.settings.kling_provider if model is ModelName.KLING else self.settings.sora_provider

    def for_model(self, model: ModelName) -> VideoProvider:
        return self.get(self.name_for(model))

    def get(self, name: str) -> VideoProvider:
        if name not in self._instances:
            self._instances[name] = provider_class(name)(self.settings)
        return self._instances[name]

    async def aclose(self) -> None:
        for provider in self._instances.values():
            await provider.aclose()
        self._instances.clear()
