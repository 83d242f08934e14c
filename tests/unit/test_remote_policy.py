"""The desired-state document's validation, the fixed allowlist, masking and capping."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from agent.remote.policy import (
    ALLOWED,
    MASKED,
    MAX_DIAGNOSTICS,
    Diagnostic,
    ModelRequest,
    SeenIds,
    cap_lines,
    json_bytes,
    mask_secrets,
    parse_desired,
)


def test_the_allowlist_is_exactly_the_four_diagnostics() -> None:
    assert set(ALLOWED) == {"log_bundle", "connectivity", "config_masked", "buffer_stats"}


def test_a_valid_document_is_accepted_whole() -> None:
    desired = parse_desired(
        {
            "model": {"name": "vrm", "version": "1.2.0-rc.1"},
            "diagnostics": [
                {"id": "r1", "kind": "log_bundle", "args": {"lines": 50}},
                {"id": "r2", "kind": "connectivity", "args": {"source": "mill_plc"}},
                {"id": "r3", "kind": "config_masked"},
                {"id": "r4", "kind": "buffer_stats", "args": {}},
            ],
        }
    )
    assert desired.refusals == ()
    assert desired.model == ModelRequest("vrm", "1.2.0-rc.1")
    assert desired.diagnostics == (
        Diagnostic("r1", "log_bundle", {"lines": 50}),
        Diagnostic("r2", "connectivity", {"source": "mill_plc"}),
        Diagnostic("r3", "config_masked", {}),
        Diagnostic("r4", "buffer_stats", {}),
    )


def test_an_empty_document_asks_for_nothing() -> None:
    desired = parse_desired({"model": None, "diagnostics": []})
    assert (desired.model, desired.diagnostics, desired.refusals) == (None, (), ())
    assert parse_desired({}) == desired


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"id": "x", "kind": "shell", "args": {"cmd": "id"}}, '"shell" is not allowed'),
        ({"id": "x", "kind": "write_tag", "args": {"tag": "T", "value": 1}}, "not allowed"),
        ({"id": "x", "kind": "set_limit"}, '"set_limit" is not allowed'),
        ({"id": "x", "kind": "log_bundle", "args": {"tag": "Mill.Feed"}}, '"tag" is not an arg'),
        ({"id": "x", "kind": "buffer_stats", "args": {"limit": 5}}, "allowed: none"),
        ({"id": "x", "kind": "config_masked", "args": {"command": "rm"}}, "not an argument"),
        ({"id": "x", "kind": "log_bundle", "args": {"lines": "10"}}, "expected an integer"),
        ({"id": "x", "kind": "log_bundle", "args": {"lines": True}}, "expected an integer"),
        ({"id": "x", "kind": "log_bundle", "args": {"lines": 10**6}}, "expected 1..5000"),
        ({"id": "x", "kind": "connectivity", "args": {"source": "a;b"}}, "a source name"),
        ({"id": "x", "kind": "log_bundle", "args": []}, "args: expected an object"),
        ({"id": "x", "kind": "log_bundle", "run": "sh"}, "unknown keys ['run']"),
        ({"id": "x", "kind": 3}, "3 is not allowed"),
    ],
)
def test_anything_outside_the_allowlist_is_refused_with_a_reason(
    item: dict[str, Any], reason: str
) -> None:
    desired = parse_desired({"diagnostics": [item]})
    assert desired.diagnostics == ()
    (refusal,) = desired.refusals
    assert refusal.subject == "diagnostic"
    assert refusal.id == "x"
    assert reason in refusal.reason


@pytest.mark.parametrize("ident", [None, 7, "", "../etc", "a/b", "x" * 65])
def test_a_request_without_a_safe_id_is_refused_without_an_id(ident: object) -> None:
    (refusal,) = parse_desired({"diagnostics": [{"id": ident, "kind": "buffer_stats"}]}).refusals
    assert refusal.id is None
    assert "diagnostics[0].id" in refusal.reason


def test_one_bad_item_does_not_refuse_the_others() -> None:
    desired = parse_desired(
        {
            "model": {"name": "vrm", "version": "1.0"},
            "diagnostics": [{"id": "a", "kind": "shell"}, {"id": "b", "kind": "buffer_stats"}],
        }
    )
    assert [d.id for d in desired.diagnostics] == ["b"]
    assert [(r.subject, r.id) for r in desired.refusals] == [("model", None), ("diagnostic", "a")]
    assert desired.model is None
    assert "semver" in desired.refusals[0].reason


@pytest.mark.parametrize(
    "document",
    [
        [],
        "shell",
        {"diagnostics": [], "exec": "reboot"},
        {"diagnostics": {"id": "a"}},
        {"model": None, "limits": {"max_step": 99}},
    ],
)
def test_a_document_of_another_shape_is_refused_as_a_whole(document: object) -> None:
    desired = parse_desired(document)
    assert (desired.model, desired.diagnostics) == (None, ())
    (refusal,) = desired.refusals
    assert refusal.subject == "document"


@pytest.mark.parametrize(
    "model",
    [
        {"name": "../../etc", "version": "1.0.0"},
        {"name": "vrm", "version": "1.0.0/../../x"},
        {"name": "vrm", "version": "1.0.0", "url": "http://evil"},
        {"name": "vrm", "version": "1.2.0-foo"},  # semver, but no version the manager can order
        {
            "name": "vrm",
            "version": "1.2.0-1",
        },  # a post-release to packaging, a pre-release to semver
        {"name": "vrm"},
        "vrm@1.0.0",
    ],
)
def test_a_bad_model_request_is_refused(model: object) -> None:
    desired = parse_desired({"model": model})
    assert desired.model is None
    assert [r.subject for r in desired.refusals] == ["model"]


def test_at_most_a_fixed_number_of_diagnostics_per_document() -> None:
    items = [{"id": f"r{i}", "kind": "buffer_stats"} for i in range(MAX_DIAGNOSTICS + 2)]
    desired = parse_desired({"diagnostics": items})
    assert len(desired.diagnostics) == MAX_DIAGNOSTICS
    assert [r.id for r in desired.refusals] == [f"r{MAX_DIAGNOSTICS}", f"r{MAX_DIAGNOSTICS + 1}"]


def test_seen_ids_says_new_once_and_forgets_the_oldest() -> None:
    seen = SeenIds(capacity=3)
    assert [seen.add(i) for i in ("a", "b", "a", "c")] == [True, True, False, True]
    assert seen.add("d")  # "a" is forgotten now
    assert "a" not in seen
    assert "b" in seen
    assert seen.add("a")


def test_secrets_are_masked_at_any_depth() -> None:
    config = {
        "sync": {"url": "https://x", "token_file": "/etc/t", "token_credential": "t"},
        "sources": [{"name": "plc", "password_file": "/p", "username": "u", "ca_file": None}],
        "other": {"password": "hunter2", "api_token": "abc", "client_secret": "s"},
    }
    masked = mask_secrets(config)
    text = json.dumps(masked)
    for secret in ("/etc/t", '"t"', "/p", "hunter2", "abc", '"s"'):
        assert secret not in text
    assert masked == {
        "sync": {"url": "https://x", "token_file": MASKED, "token_credential": MASKED},
        "sources": [{"name": "plc", "password_file": MASKED, "username": "u", "ca_file": None}],
        "other": {"password": MASKED, "api_token": MASKED, "client_secret": MASKED},
    }


def test_json_bytes_is_strict_and_capped() -> None:
    data, cut = json_bytes({"a": math.nan, "b": [math.inf, 1], "c": object}, 1000)
    assert not cut
    assert json.loads(data) == {"a": None, "b": [None, 1], "c": str(object)}
    data, cut = json_bytes({"big": "x" * 5000}, 1000)
    assert cut
    assert json.loads(data) == {"truncated": True, "bytes": 5010, "cap_bytes": 1000}


def test_cap_lines_keeps_the_newest_lines_that_fit() -> None:
    lines = [f"line {i:03d}" for i in range(100)]  # 8 bytes + 4 each
    kept, cut = cap_lines(lines, 120)
    assert cut
    assert kept == lines[-10:]
    assert cap_lines(lines[:3], 120) == (lines[:3], False)
