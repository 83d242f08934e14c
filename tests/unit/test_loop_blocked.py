"""A blocked loop says so once per reason, and once more when it acts again."""

from __future__ import annotations

from agent.control.loop_blocked import BLOCKED_AFTER_CYCLES, BlockedEpisode, Report

MODEL = "model: no valid version of model 'vrm-qualty'"


def feed(episode: BlockedEpisode, cycles: list[tuple[bool, str]]) -> list[Report]:
    return [r for blocked, reason in cycles if (r := episode.cycle(blocked, reason)) is not None]


def test_one_warning_after_a_few_cycles_however_long_it_lasts_and_one_recovery() -> None:
    episode = BlockedEpisode()
    reports = feed(episode, [(True, MODEL)] * 50 + [(False, "shadow mode")] * 5)
    assert reports == [
        Report("loop_blocked", MODEL, BLOCKED_AFTER_CYCLES),
        Report("loop_unblocked", MODEL, 50),
    ]


def test_a_short_block_says_nothing() -> None:
    episode = BlockedEpisode()
    cycles = [(True, MODEL)] * (BLOCKED_AFTER_CYCLES - 1) + [(False, "hold")]
    assert feed(episode, cycles * 10) == []


def test_numbers_in_a_reason_do_not_make_it_a_new_reason() -> None:
    episode = BlockedEpisode(after=3)
    lags = [
        (True, f"handshake: HeartbeatEcho {n} does not follow the heartbeat {n + 7} (lag 7, max 5)")
        for n in range(10)
    ]
    reports = feed(episode, lags)
    assert [r.event for r in reports] == ["loop_blocked"]
    assert reports[0].reason == lags[2][1]


def test_a_new_reason_that_lasts_is_reported_too_but_each_reason_once_per_episode() -> None:
    episode = BlockedEpisode(after=2)
    other = "inputs: FeedRate is Bad (BadNoCommunication)"
    cycles = [(True, MODEL)] * 3 + [(True, other)] * 3 + [(True, MODEL)] * 3
    reports = feed(episode, [*cycles, (False, "write")])
    assert reports == [
        Report("loop_blocked", MODEL, 2),
        Report("loop_blocked", other, 2),
        Report("loop_unblocked", MODEL, 9),
    ]
    # A new episode reports again.
    assert feed(episode, [(True, MODEL)] * 2) == [Report("loop_blocked", MODEL, 2)]
