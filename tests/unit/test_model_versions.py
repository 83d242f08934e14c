"""Model versions are read and ordered by packaging.version, never as text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.packages import versions


def test_1_10_0_is_newer_than_1_9_0() -> None:
    assert versions.newest_first(["1.9.0", "1.10.0", "1.2.0"]) == ["1.10.0", "1.9.0", "1.2.0"]
    assert versions.is_newer("1.10.0", "1.9.0")
    assert not versions.is_newer("1.9.0", "1.10.0")
    assert sorted(["1.9.0", "1.10.0"], reverse=True) == ["1.9.0", "1.10.0"]  # what text says


def test_pre_releases_are_ordered_as_versions() -> None:
    listed = ["1.2.0-rc.9", "1.2.0", "1.2.0-rc.10", "1.2.0-b.1", "1.1.9", "1.2.0-dev.3"]
    assert versions.newest_first(listed) == [
        "1.2.0", "1.2.0-rc.10", "1.2.0-rc.9", "1.2.0-b.1", "1.2.0-dev.3", "1.1.9",
    ]  # fmt: skip
    assert versions.is_newer("1.2.0", "1.2.0-rc.10")
    assert not versions.is_newer("1.2.0-rc1", "1.2.0-rc.1")  # one version, two spellings


def test_one_version_spelled_twice_is_ordered_the_same_whatever_the_listing() -> None:
    assert versions.newest_first(["1.2.0-rc1", "1.2.0-rc.1"]) == versions.newest_first(
        ["1.2.0-rc.1", "1.2.0-rc1"]
    )


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("latest", "expected a semver like 1.2.0, found 'latest'"),
        ("1.2", "expected a semver like 1.2.0, found '1.2'"),
        ("v1.2.0", "expected a semver like 1.2.0, found 'v1.2.0'"),
        ("01.2.0", "expected a semver like 1.2.0, found '01.2.0'"),
        (
            "1.2.0-foo",
            "expected a semver like 1.2.0 whose pre-release packaging.version "
            "orders as one (-a.1, -b.2, -rc.1, -dev.3), found '1.2.0-foo'",
        ),
        # semver calls it a pre-release, packaging a post-release (1.2.0.post1): not ordered
        (
            "1.2.0-1",
            "expected a semver like 1.2.0 whose pre-release packaging.version "
            "orders as one (-a.1, -b.2, -rc.1, -dev.3), found '1.2.0-1'",
        ),
    ],
)
def test_an_invalid_version_is_never_ordered_and_says_why(text: str, found: str) -> None:
    assert versions.parse(text) is None
    assert versions.problem(text) == found
    assert versions.newest_first([text, "0.0.1"]) == ["0.0.1"]
    assert not versions.is_newer(text, "0.0.1")
    assert versions.is_newer("0.0.1", text)


@pytest.mark.parametrize("text", ["1.2.0", "0.0.0", "1.2.0-rc.1", "1.2.0+build.7", "2.0.0-a.1+x"])
def test_a_version_has_no_problem(text: str) -> None:
    assert versions.parse(text) is not None
    assert versions.problem(text) is None


@given(st.lists(st.tuples(*[st.integers(0, 30)] * 3), min_size=1, max_size=8))
def test_release_order_is_the_numeric_order(parts: list[tuple[int, int, int]]) -> None:
    texts = [".".join(map(str, p)) for p in parts]
    newest = versions.newest_first(texts)
    assert [tuple(map(int, t.split("."))) for t in newest] == sorted(parts, reverse=True)
