"""Model versions: what a version is, and which of two is newer (packaging.version).

Owns: reading a model version (a package folder's name, a manifest's `version`, a loop's
pinned `model_version`) and the one order the model manager and `edge-agent check` use
(`newest_first`, `is_newer`).
Must not: touch the filesystem or log: it is pure; the caller puts the file or key in front
of a `problem()` text.
Invariants: a version is a semver (MAJOR.MINOR.PATCH, optional -pre-release, optional
+build) that packaging.version reads as the same kind of release: 1.10.0 is newer than
1.9.0, 1.2.0-rc.1 older than 1.2.0; a semver pre-release packaging would read otherwise
(1.2.0-1 is a post-release to it) or not at all (1.2.0-foo) is not a version. An invalid
text is never ordered: it sorts below every version and `problem()` says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from packaging.version import InvalidVersion, Version

__all__ = ["is_newer", "newest_first", "parse", "problem"]

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_BELOW_ALL = Version("0")


def parse(text: str) -> Version | None:
    """The version `text` names, or None when it is not one (see `problem`)."""
    if not _SEMVER.match(text):
        return None
    try:
        version = Version(text)
    except InvalidVersion:
        return None
    semver_pre = "-" in text.partition("+")[0]
    return version if version.is_prerelease == semver_pre else None


def problem(text: str) -> str | None:
    """None for a version, else `expected ..., found ...` (the caller names file and key)."""
    if parse(text) is not None:
        return None
    if not _SEMVER.match(text):
        return f"expected a semver like 1.2.0, found {text!r}"
    return (
        "expected a semver like 1.2.0 whose pre-release packaging.version orders as one "
        f"(-a.1, -b.2, -rc.1, -dev.3), found {text!r}"
    )


def _key(text: str) -> tuple[bool, Version, str]:
    """Valid above invalid, then by version; the text only breaks a tie (1.2.0-rc.1 and
    1.2.0-rc1 are one version to packaging) so that the order never depends on a listing."""
    version = parse(text)
    return (False, _BELOW_ALL, text) if version is None else (True, version, text)


def is_newer(candidate: str, than: str) -> bool:
    """Whether `candidate` is a version newer than `than` (an invalid one never is)."""
    return parse(candidate) is not None and _key(candidate)[:2] > _key(than)[:2]


def newest_first(texts: Iterable[str]) -> list[str]:
    """The versions among `texts`, newest first (by version, never by text); invalid ones
    are left out."""
    return sorted((t for t in texts if parse(t) is not None), key=_key, reverse=True)
