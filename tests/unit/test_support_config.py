"""tests.support.config, the config builder of the tests: what it writes reads back the
same, and every edit of a key that is not there (or, to add, already is) fails loudly."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from agent.demo.headless.config import dumps
from tests.support.config import ConfigDoc, replace_once

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.toml", "example-plant.toml"])
def test_the_shipped_configs_read_back_the_same(name: str) -> None:
    config = ConfigDoc.read(REPO / "config" / name)
    assert tomllib.loads(config.text()) == config.data


def test_scalars_lists_tables_and_arrays_of_tables_read_back_the_same() -> None:
    doc = {
        "top": 'a "quoted" \\ text\twith\x7f controls \u00e9',
        "n": -3,
        "x": 1e-9,
        "big": 2.5e20,
        "inf": float("inf"),
        "flag": False,
        "empty": [],
        "list": [1, 2.5, "three", True],
        "t": {"k": 1, "dotted key": "v", "sub": {"deep": "er"}},
        "arr": [{"a": 1, "inner": {"b": 2}, "rows": [{"c": 3}, {"c": 4}]}, {"a": 5}],
    }
    assert tomllib.loads(dumps(doc)) == doc


def test_edits_by_key_path() -> None:
    config = ConfigDoc.read(REPO / "config" / "demo.toml")
    config.set("sync.enabled", False).add("api.enabled", False)
    config.set("loops[name=limestone].mode", "shadow").set("loops[*].cadence_s", 1.0)
    config.set("loops[*].inputs[feature=clinker_c3s].window_s", 0.5)
    config.remove("loops[0].inputs[feature=feed_rate]")
    config.append("loops[0].grid", {"feature": "mill_power", "span": 10.0, "step": 5.0})
    data = tomllib.loads(config.text())
    assert (data["sync"]["enabled"], data["api"]["enabled"]) == (False, False)
    assert [lp["mode"] for lp in data["loops"]] == ["closed_loop", "shadow"]
    assert [lp["cadence_s"] for lp in data["loops"]] == [1.0, 1.0]
    for loop in data["loops"]:
        (c3s,) = [i for i in loop["inputs"] if i["feature"] == "clinker_c3s"]
        assert c3s["window_s"] == 0.5
    assert "feed_rate" not in [i["feature"] for i in data["loops"][0]["inputs"]]
    assert "feed_rate" in [i["feature"] for i in data["loops"][1]["inputs"]]
    assert data["loops"][0]["grid"][-1]["feature"] == "mill_power"
    assert config.get("loops[name=separator].lever") == "separator_speed"
    assert config.has("loops[*].model") and not config.has("loops[*].max_rate_per_h")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.set("agent.log_levl", "debug"), "agent.log_levl: no key 'log_levl'"),
        (lambda c: c.set("loops[*].max_rate_per_h", 1.0), "no key 'max_rate_per_h'"),
        (lambda c: c.add("agent.id", "x"), "agent.id: already there ('demo-mill-1')"),
        (lambda c: c.set("cloud.url", "x"), "cloud.url: no table 'cloud'"),
        (lambda c: c.set("loops[name=mill].mode", "off"), "[name=mill] matches 0 of"),
        (lambda c: c.set("loops[2].mode", "off"), "[2] of an array of 2"),
        (lambda c: c.remove("loops[0].inputs[feature=nope]"), "[feature=nope] matches 0"),
        (lambda c: c.get("loops[*].mode"), "2 values match, expected one"),
        (lambda c: c.set("loops.mode", "off"), "no table 'loops'"),
    ],
)
def test_an_edit_of_a_key_that_is_not_there_fails_loudly(edit: object, message: str) -> None:
    config = ConfigDoc.read(REPO / "config" / "demo.toml")
    with pytest.raises(KeyError, match=re.escape(message)):
        edit(config)  # type: ignore[operator]


def test_replace_once_wants_its_text_exactly_once() -> None:
    assert replace_once("a = 1\nb = 2\n", "b = 2", "b = 3") == "a = 1\nb = 3\n"
    with pytest.raises(AssertionError, match="found it 0 times"):
        replace_once("a = 1\n", "b = 2", "b = 3")
    with pytest.raises(AssertionError, match="found it 2 times"):
        replace_once("x = 1\nx = 1\n", "x = 1", "x = 2")
