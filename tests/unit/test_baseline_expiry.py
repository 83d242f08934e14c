"""The operator's baseline expires without a confirmation (plant-model 3 D): the pure rule."""

from __future__ import annotations

from agent.control.baseline import Confirmation
from agent.domain.samples import BAD, GOOD, Sample


def _confirm(value: int, at: float, status: int = GOOD) -> Sample:
    return Sample("BaselineConfirm", at, value, status, at)


def test_without_expiry_nothing_expires() -> None:
    c = Confirmation(None)
    c.taken(0.0)
    assert not c.expired(1e9)


def test_the_grant_confirms_and_the_baseline_expires_after_expiry_s() -> None:
    c = Confirmation(600.0)
    assert not c.expired(10_000.0)  # no baseline held: nothing to expire
    c.taken(1000.0)
    assert not c.expired(1600.0)
    assert c.expired(1600.5)
    assert "no operator confirmation for 601 s" in c.reason(1601.0)


def test_only_a_change_of_the_confirm_tag_confirms() -> None:
    c = Confirmation(600.0)
    c.taken(1000.0)
    assert not c.see(_confirm(7, 1100.0), 1100.0)  # the first value seen: not a confirmation
    assert not c.see(_confirm(7, 1200.0), 1200.0)  # the same value again: not one either
    assert not c.see(_confirm(8, 1300.0, BAD), 1300.0)  # not Good: ignored
    assert c.see(_confirm(8, 1400.0), 1400.0)  # the HMI counter moved: confirmed at its time
    assert c.at == 1400.0
    assert not c.expired(2000.0)
    assert c.expired(2000.5)


def test_a_confirmation_from_the_future_counts_as_now() -> None:
    c = Confirmation(600.0)
    c.taken(1000.0)
    c.see(_confirm(1, 1000.0), 1000.0)
    assert c.see(_confirm(2, 9999.0), 1100.0)
    assert c.at == 1100.0


def test_a_baseline_taken_again_under_the_same_grant_confirms_nothing() -> None:
    c = Confirmation(600.0)
    c.taken(1000.0)  # granted at 1000
    c.taken(1000.0)  # the handshake failed a moment, the same grant: a new baseline, same time
    assert c.at == 1000.0 and c.expired(1600.5)
    c.taken(2000.0)  # the operator gave remote again at 2000: that is a confirmation
    assert c.at == 2000.0 and not c.expired(2600.0)


def test_the_confirm_tag_confirms_nothing_before_a_baseline() -> None:
    c = Confirmation(600.0)
    c.see(_confirm(1, 1000.0), 1000.0)
    assert not c.see(_confirm(2, 1100.0), 1100.0)
    assert c.at is None and not c.expired(99_999.0)
