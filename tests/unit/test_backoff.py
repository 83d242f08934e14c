"""The one backoff policy: exact values for the defaults, and its properties for any policy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.domain.backoff import Backoff

rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
attempts = st.integers(min_value=0, max_value=10_000)
hints = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(0.0, 10_000.0)
)


@st.composite
def policies(draw: st.DrawFn) -> Backoff:
    initial = draw(st.floats(min_value=1e-3, max_value=100.0))
    return Backoff(
        initial_s=initial,
        max_s=draw(st.floats(min_value=initial, max_value=10_000.0)),
        multiplier=draw(st.floats(min_value=1.0, max_value=10.0)),
        jitter=draw(st.floats(min_value=0.0, max_value=0.99)),
        max_hint_s=draw(st.floats(min_value=0.0, max_value=100_000.0)),
    )


def test_defaults_without_jitter_double_from_half_a_second_to_a_minute() -> None:
    policy = Backoff()
    assert [policy.delay(n, 0.5) for n in range(9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0,
    ]  # fmt: skip


def test_jitter_is_symmetric_and_full_range() -> None:
    policy = Backoff(initial_s=10.0, max_s=10.0, jitter=0.2)
    assert policy.delay(0, 0.0) == pytest.approx(8.0)
    assert policy.delay(0, 0.5) == 10.0
    assert policy.delay(0, 0.999999) == pytest.approx(12.0, rel=1e-5)


def test_huge_attempt_saturates_instead_of_overflowing() -> None:
    assert Backoff().delay(10**6, 0.5) == 60.0
    assert Backoff(multiplier=1.0).delay(10**9, 0.5) == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0},
        {"initial_s": -1.0},
        {"initial_s": 2.0, "max_s": 1.0},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"max_s": math.inf},
        {"initial_s": math.nan},
        {"max_hint_s": -1.0},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)


@pytest.mark.parametrize("rand", [-0.1, 1.0, math.nan])
def test_rand_outside_unit_interval_is_refused(rand: float) -> None:
    with pytest.raises(ValueError, match="rand"):
        Backoff().delay(0, rand)


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1, 0.5)


def test_hint_wins_when_longer_and_is_capped() -> None:
    policy = Backoff(max_hint_s=900.0)
    assert policy.delay_with_hint(0, 0.5, None) == 0.5
    assert policy.delay_with_hint(0, 0.5, 30.0) == 30.0
    assert policy.delay_with_hint(5, 0.5, 1.0) == 16.0  # computed wins when longer
    assert policy.delay_with_hint(0, 0.5, 86_400.0) == 900.0
    assert policy.delay_with_hint(0, 0.5, math.inf) == 900.0
    assert policy.delay_with_hint(0, 0.5, -5.0) == 0.5
    assert policy.delay_with_hint(0, 0.5, math.nan) == 0.5


@given(policies(), attempts, rands)
def test_delay_is_positive_and_bounded(policy: Backoff, attempt: int, rand: float) -> None:
    delay = policy.delay(attempt, rand)
    assert 0 < delay <= policy.max_s * (1 + policy.jitter)
    base = policy.base(attempt)
    assert base * (1 - policy.jitter) <= delay * (1 + 1e-12)
    assert delay <= base * (1 + policy.jitter)


@given(policies(), attempts, rands)
def test_delay_never_decreases_with_attempt(policy: Backoff, attempt: int, rand: float) -> None:
    assert policy.delay(attempt, rand) <= policy.delay(attempt + 1, rand)


@given(policies(), attempts, rands, rands)
def test_delay_never_decreases_with_rand(
    policy: Backoff, attempt: int, rand_a: float, rand_b: float
) -> None:
    low, high = sorted((rand_a, rand_b))
    assert policy.delay(attempt, low) <= policy.delay(attempt, high)


@given(policies(), attempts)
def test_middle_rand_gives_the_base(policy: Backoff, attempt: int) -> None:
    assert policy.delay(attempt, 0.5) == policy.base(attempt)
    assert policy.initial_s <= policy.base(attempt) <= policy.max_s


@given(policies(), st.integers(min_value=0, max_value=10**12))
def test_first_attempt_is_initial_and_cap_is_reached(policy: Backoff, attempt: int) -> None:
    assert policy.base(0) == policy.initial_s
    if policy.multiplier >= 1.01 and attempt >= 10_000:
        assert policy.base(attempt) == policy.max_s


@given(policies(), attempts, rands, hints)
def test_hint_is_never_sooner_than_computed_and_stays_bounded(
    policy: Backoff, attempt: int, rand: float, hint: float | None
) -> None:
    computed = policy.delay(attempt, rand)
    delay = policy.delay_with_hint(attempt, rand, hint)
    assert delay >= computed
    assert delay <= max(policy.max_s * (1 + policy.jitter), policy.max_hint_s)
    if hint is not None and 0 <= hint <= policy.max_hint_s:
        assert delay >= hint
