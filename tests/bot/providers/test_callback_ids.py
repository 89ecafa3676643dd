"""Each adapter parses its own callback body into provider job ids (bot/web.py knows no id format)."""

import pytest

from bot.providers.registry import provider_class


def test_kling_callback_names_the_task_under_either_kind() -> None:
    kling = provider_class("kling")
    assert kling.callback_job_ids({"task_id": "t1"}) == ["text2video:t1", "image2video:t1"]
    assert kling.callback_job_ids({"data": {"task_id": 7}}) == ["text2video:7", "image2video:7"]
    for junk in ({}, {"task_id": True}, {"task_id": ""}, {"data": "x"}, {"task_id": ["t"]}):
        with pytest.raises(ValueError, match="no task id"):
            kling.callback_job_ids(junk)


def test_replicate_callback_is_the_prediction() -> None:
    replicate = provider_class("replicate")
    assert replicate.callback_job_ids({"id": "p1", "status": "succeeded"}) == ["p1"]
    for junk in ({}, {"id": 3}, {"id": ""}):
        with pytest.raises(ValueError, match="no prediction id"):
            replicate.callback_job_ids(junk)


def test_providers_without_callbacks_name_nothing() -> None:
    with pytest.raises(ValueError):
        provider_class("openai").callback_job_ids({"id": "video_1"})
