"""tests.support.config's base agent config and sub_once: what `agent_config` writes is a
config the agent accepts, edits do not leak into the shared parts, and `sub_once` fails
loudly unless its pattern matches exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config.loader import load_config
from tests.support.config import (
    FEEDER_TAG,
    MILL,
    ConfigDoc,
    agent_config,
    mill_tags,
    modbus_source,
    opcua_source,
    sub_once,
)


def test_the_base_config_is_one_the_agent_loads(tmp_path: Path) -> None:
    path = agent_config(
        "t-1",
        sources=[opcua_source("opc.tcp://127.0.0.1:4840/"), modbus_source(5020)],
        tags=[*mill_tags("FeedRate", "MillPower"), FEEDER_TAG],
        sync={"enabled": False},
        api={"enabled": False},
        shutdown_timeout_s=60,
    ).write(tmp_path / "agent.toml")
    settings = load_config(path).settings
    assert settings.agent.id == "t-1" and settings.agent.shutdown_timeout_s == 60
    assert [t.name for t in settings.tags] == ["FeedRate", "MillPower", "ClinkerFeedRate"]
    assert settings.tags[0].address == MILL + "FeedRate"
    assert [s.name for s in settings.sources] == ["mill", "feeders"]
    assert not settings.sync.enabled and not settings.api.enabled


def test_sections_not_given_are_left_to_the_agent_and_edits_stay_in_one_config() -> None:
    doc = agent_config("t-2", sources=[], tags=[FEEDER_TAG])
    assert not doc.has("sync") and not doc.has("api")
    doc.set("tags[name=ClinkerFeedRate].scale", 1.0)
    assert FEEDER_TAG["scale"] == 0.1
    assert ConfigDoc.parse(doc.text()).get("tags[0].scale") == 1.0


def test_sub_once_changes_the_one_match_and_fails_loudly_otherwise() -> None:
    text = "version=1.0\nname=x\n"
    assert sub_once(r"(?m)^version=.*$", "version=2.0", text) == "version=2.0\nname=x\n"
    with pytest.raises(AssertionError, match="found 0"):
        sub_once(r"(?m)^release=.*$", "release=2", text)
    with pytest.raises(AssertionError, match="found 2"):
        sub_once(r"(?m)^\w+=", "k=", text)
