"""Every enabled catalogue entry, through every adapter that has an id for it, against the strict fakes.

The fakes refuse any field an endpoint does not document for that model (tests/bot/providers/
fakes.py), so a body carrying a field "to be ignored" fails here instead of failing in production
and being refunded.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bot import catalogue
from bot.config import Settings
from bot.providers.base import JobContext
from bot.providers.kling import KlingProvider, make_jwt
from bot.providers.openai_videos import OpenAIVideosProvider
from bot.providers.replicate import ReplicateProvider
from bot.requests import AnyRequest, parse_request
from tests.bot.providers.fakes import KLING_ACCESS, KLING_FIELDS, KLING_SECRET, REPLICATE_SCHEMAS, FakeProviders

ADAPTERS = {"replicate": ReplicateProvider, "kling": KlingProvider, "openai": OpenAIVideosProvider}
CASES = [(spec.id, provider) for spec in catalogue.load().enabled() for provider in ADAPTERS
         if spec.provider_ids.get(provider)]


def _requests(spec: catalogue.ModelSpec, reference: Path) -> list[AnyRequest]:
    """The richest text request and an image request the entry allows, at its longest duration."""
    options: dict[str, object] = {"model_id": spec.id, "prompt": "A fox runs", "duration": spec.durations[-1]}
    if spec.family == "kling":
        options["aspect_ratio"] = spec.shapes[-1]
        if spec.cfg_scale:
            options["cfg_scale"] = 0.4
        if spec.negative_prompt:
            options["negative_prompt"] = "blur"
    else:
        options["orientation"] = spec.shapes[-1]
        if spec.high_sizes:
            options["resolution"] = "high"
    text = parse_request(spec.family, **options)
    image = parse_request(spec.family, has_image=True, **options).model_copy(
        update={"reference_image": str(reference)})
    return [text, image]


@pytest.mark.parametrize(("model_id", "provider"), CASES)
async def test_every_enabled_model_is_accepted_by_the_strict_fake(model_id: str, provider: str, fake: FakeProviders,
                                                                  provider_settings: Settings, tmp_path: Path) -> None:
    spec = catalogue.get(model_id)
    reference = tmp_path / "ref.png"
    Image.new("RGB", spec.size(spec.shapes[-1], spec.tiers[-1]), "red").save(reference)
    adapter = ADAPTERS[provider](provider_settings)
    try:
        for job_id, request in enumerate(_requests(spec, reference), start=1):
            task = await adapter.submit(JobContext(job_id=job_id, request=request))
            assert task
    finally:
        await adapter.aclose()
    bodies = fake.requests_to(r"(predictions|videos|text2video|image2video)$", "POST")
    assert len(bodies) == 2
    for seen, with_image in zip(bodies, (False, True), strict=True):
        body = seen.json if seen.json is not None else seen.form
        fields = body.get("input", body)
        if provider == "replicate":
            assert seen.path.endswith(f"/models/{spec.provider_ids['replicate']}/predictions")
            assert ("aspect_ratio" in fields) == (spec.family == "sora" or not with_image)
            assert ("generate_audio" in fields) == (spec.family == "kling" and spec.audio)
            assert ("cfg_scale" in fields) == spec.cfg_scale
        elif provider == "kling":
            assert fields["model_name"] == spec.provider_ids["kling"] and fields["mode"] == spec.mode
            assert ("aspect_ratio" in fields) == (not with_image)  # image2video takes none
            assert ("sound" in fields) == spec.audio
        else:
            assert fields["model"] == spec.provider_ids["openai"]
            assert fields["size"] == "x".join(map(str, spec.size(spec.shapes[-1], spec.tiers[-1])))


def test_every_shipped_model_with_a_provider_id_is_known_to_the_fakes() -> None:
    """The fakes and the catalogue name the same ids (a renamed id must be renamed in both)."""
    assert KLING_FIELDS
    for spec in catalogue.load().enabled():
        if "replicate" in spec.provider_ids:
            assert spec.provider_ids["replicate"] in REPLICATE_SCHEMAS, spec.id


async def test_the_old_image2video_body_with_aspect_ratio_is_refused(fake: FakeProviders,
                                                                     provider_settings: Settings) -> None:
    """The fake is strict: the body the adapter used to send (aspect_ratio on image2video) fails."""
    token = make_jwt(KLING_ACCESS, KLING_SECRET, time.time())
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{provider_settings.kling_api_base}/v1/videos/image2video",
                                     headers={"Authorization": f"Bearer {token}"},
                                     json={"model_name": "kling-v2-master", "prompt": "p", "mode": "std",
                                           "duration": "5", "image": "aGVsbG8=", "aspect_ratio": "16:9"})
    assert response.status_code == 400 and response.json()["code"] == 1201
    assert "aspect_ratio" in response.json()["message"]
