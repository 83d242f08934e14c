"""The exception hierarchy: one verb per class, config problems rendered for plant IT."""

from __future__ import annotations

import dataclasses

import pytest

from agent.domain.errors import (
    ConfigError,
    ConfigProblem,
    ConnectionLostError,
    DeviceTimeoutError,
    EdgeAgentError,
    FatalError,
    QuarantineError,
    RejectedError,
    RetryableError,
    SafetyStopError,
    WriteRejectedError,
)

VERBS = (RetryableError, RejectedError, FatalError)


@pytest.mark.parametrize(
    ("cls", "verb"),
    [
        (ConnectionLostError, RetryableError),
        (DeviceTimeoutError, RetryableError),
        (WriteRejectedError, RejectedError),
        (QuarantineError, RejectedError),
        (ConfigError, FatalError),
        (SafetyStopError, FatalError),
    ],
)
def test_each_error_has_exactly_one_verb(cls: type[EdgeAgentError], verb: type) -> None:
    assert issubclass(cls, EdgeAgentError)
    assert [v for v in VERBS if issubclass(cls, v)] == [verb]


def test_device_timeout_is_not_a_builtin_timeout_or_oserror() -> None:
    # An `except OSError`/`except TimeoutError` at a library boundary must not catch ours.
    assert not issubclass(DeviceTimeoutError, OSError)
    assert not issubclass(DeviceTimeoutError, TimeoutError)


def test_retryable_carries_an_optional_hint() -> None:
    assert ConnectionLostError("gone").retry_after_s is None
    err = RetryableError("busy", retry_after_s=12.5)
    assert err.retry_after_s == 12.5
    assert str(err) == "busy"


def test_config_problem_renders_exactly() -> None:
    problem = ConfigProblem(
        file="/etc/edge-agent/agent.toml",
        key="sources[0].port",
        expected="an integer 1..65535",
        found="'five-oh-two'",
    )
    assert problem.render() == (
        "/etc/edge-agent/agent.toml: sources[0].port: expected an integer 1..65535, "
        "found 'five-oh-two'"
    )


def test_config_problem_is_frozen() -> None:
    problem = ConfigProblem(file="a.toml", key="k", expected="e", found="f")
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.key = "other"  # type: ignore[misc]


def test_config_error_keeps_problems_and_exits_78() -> None:
    problems = [
        ConfigProblem("a.toml", "agent.id", "a string", "nothing"),
        ConfigProblem("a.toml", "sync.url", "an https URL", "'ftp://x'"),
    ]
    err = ConfigError(problems)
    assert err.problems == tuple(problems)
    assert err.exit_code == 78
    assert ConfigError.exit_code == 78
    assert str(err).splitlines() == [p.render() for p in problems]
    problems.clear()  # the error holds its own copy
    assert len(err.problems) == 2


def test_other_fatal_errors_do_not_claim_ex_config() -> None:
    assert SafetyStopError("read-back mismatch").exit_code != 78
    assert str(ConfigError([])) == "invalid configuration"
