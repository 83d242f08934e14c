"""Logs are an interface: JSON lines with stable keys, stdlib routed through, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from agent.service.logs import REDACTED, configure_logging, get_logger, redact
from tests.support.logs import events, kept_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    with kept_logging():
        yield


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_carry_the_stable_keys() -> None:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    get_logger("agent.test").info("buffer_opened", path="/var/lib/edge-agent/buffer.db")
    (line,) = events(out)
    assert line["event"] == "buffer_opened"
    assert line["level"] == "info"
    assert line["logger"] == "agent.test"
    assert line["path"] == "/var/lib/edge-agent/buffer.db"
    assert line["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert line["timestamp"][10] == "T"


def test_level_filters_structlog_events() -> None:
    out = io.StringIO()
    configure_logging("warning", json=True, stream=out)
    log = get_logger("agent.test")
    log.info("not_shown")
    log.warning("shown")
    assert [line["event"] for line in events(out)] == ["shown"]


def test_stdlib_library_logs_route_through_as_json() -> None:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    logging.getLogger("asyncua.client.ua_client").warning("Publish failed: %s", "BadTimeout")
    logging.getLogger("asyncua").info("chatty detail")  # held at WARNING at info level
    (line,) = events(out)
    assert line["event"] == "Publish failed: BadTimeout"
    assert line["level"] == "warning"
    assert line["logger"] == "asyncua.client.ua_client"
    assert "timestamp" in line


def test_noisy_libraries_speak_up_at_debug() -> None:
    out = io.StringIO()
    configure_logging("debug", json=True, stream=out)
    logging.getLogger("pymodbus.logging").debug("frame sent")
    get_logger("agent.test").debug("frame_noted")
    assert [line["event"] for line in events(out)] == ["frame sent", "frame_noted"]


def test_exception_is_rendered_inside_the_one_json_line() -> None:
    out = io.StringIO()
    configure_logging("info", json=True, stream=out)
    log = get_logger("agent.test")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("upload_failed")
    try:
        raise KeyError("stdlib")
    except KeyError:
        logging.getLogger("httpx").error("request failed", exc_info=True)
    text = out.getvalue()
    assert text.count("\n") == 2
    first, second = events(out)
    assert first["level"] == "error"
    assert "Traceback (most recent call last)" in first["exception"]
    assert "ValueError: boom" in first["exception"]
    assert "KeyError: 'stdlib'" in second["exception"]


def test_secrets_never_reach_the_output() -> None:
    out = io.StringIO()
    configure_logging("debug", json=True, stream=out)
    get_logger("agent.test").info(
        "sync_configured",
        token="abc",
        password=SecretStr("hunter2"),
        client_secret="s3cr3t",
        api_key="k-123",
        credentials=SecretStr("zzz"),
        upstream=SecretStr("hidden-under-an-innocent-key"),
        headers={"Authorization": "Bearer xyz", "Accept": "application/json"},
        items=[{"private_key": "-----BEGIN"}],
        token_file="/etc/edge-agent/token",
        url="https://cloud.example",
    )
    text = out.getvalue()
    for secret in ("abc", "hunter2", "s3cr3t", "k-123", "zzz", "hidden", "xyz", "BEGIN"):
        assert secret not in text
    (line,) = events(out)
    assert line["token"] == REDACTED
    assert line["upstream"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert line["items"] == [{"private_key": REDACTED}]
    assert line["token_file"] == "/etc/edge-agent/token"  # a path is not a secret
    assert line["url"] == "https://cloud.example"


def test_redact_leaves_ordinary_keys_alone() -> None:
    event = {"event": "x", "monkey": "m", "tokens": 1, "keyboard": "k", "sort_key": "s"}
    result = redact(None, "info", dict(event))
    assert result["monkey"] == "m"
    assert result["keyboard"] == "k"
    assert result["tokens"] == REDACTED  # over-redaction is the safe side
    assert result["sort_key"] == REDACTED


def test_configuring_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", json=True, stream=first)
    configure_logging("info", json=True, stream=second)
    configure_logging("info", json=True, stream=second)
    get_logger("agent.test").info("started")
    logging.getLogger("asyncua").warning("stdlib once")
    assert first.getvalue() == ""
    assert [line["event"] for line in events(second)] == ["started", "stdlib once"]


def test_reconfiguring_applies_to_loggers_obtained_earlier() -> None:
    log = get_logger("agent.early")
    out = io.StringIO()
    configure_logging("error", json=True, stream=out)
    log.warning("dropped")
    configure_logging("debug", json=True, stream=out)
    log.debug("kept")
    assert [line["event"] for line in events(out)] == ["kept"]


def test_json_is_chosen_automatically_unless_the_stream_is_a_tty() -> None:
    piped = io.StringIO()
    configure_logging("info", stream=piped)
    get_logger("agent.test").info("piped_event", token="abc")
    assert events(piped)[0]["event"] == "piped_event"

    tty = FakeTTY()
    configure_logging("info", stream=tty)
    get_logger("agent.test").info("console_event", token="abc")
    text = tty.getvalue()
    assert "console_event" in text
    assert "abc" not in text
    assert "\x1b[" in text  # coloured for a human
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_console_renders_exceptions_without_warnings() -> None:
    out = io.StringIO()
    configure_logging("info", json=False, stream=out)
    try:
        raise RuntimeError("console boom")
    except RuntimeError:
        get_logger("agent.test").exception("crashed")
    text = out.getvalue()
    assert "crashed" in text
    assert "console boom" in text
    assert "\x1b[" not in text  # forced console on a pipe: no colour codes


def test_tracebacks_never_show_locals() -> None:
    for stream in (io.StringIO(), FakeTTY()):
        configure_logging("info", stream=stream)
        plc_password = "hun" + "ter2"  # a local in the failing frame (not in the source text)
        try:
            raise ConnectionError(f"login failed for {len(plc_password)}-char password")
        except ConnectionError:
            get_logger("agent.test").exception("login_failed")
        text = stream.getvalue()
        assert "login failed" in text
        assert "hunter2" not in text


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("verbose", stream=io.StringIO())
