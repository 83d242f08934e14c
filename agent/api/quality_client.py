"""`edge-agent quality status|restore|promote`: ask a running agent's local API about its truth
loop, and send it the operator's two actions (agent.api.quality_routes answers them).

Owns: the requests (a GET of /status, a POST of restore or promote with operator and reason),
the one line each failure is (nobody answering, a refusal with the agent's reason), and the
printed outcome of an action.
Must not: import the daemon's components, retry an action (the operator repeats it; a repeat
of a done restore is refused with 409, never done twice), or print a traceback.
Invariants: an action is one POST and returns the line to print (the CLI prints it, exit 0);
every failure raises QualityActionError (the CLI prints it and exits 1).
"""

from __future__ import annotations

import sys
from typing import Any

import httpx
from rich.console import Console

from agent.api.quality_view import quality_loops, render_comparison
from agent.api.status_view import TIMEOUT_S, StatusUnavailableError, fetch_status

__all__ = ["QualityActionError", "post_action", "promote", "restore", "run_quality_status"]


class QualityActionError(Exception):
    """The agent could not be asked, or refused; the message is the one line to print."""


def post_action(url: str, loop: str, action: str, body: dict[str, str]) -> dict[str, Any]:
    """POST ``body`` to ``{url}/v1/loops/{loop}/quality/{action}``; its JSON answer."""
    target = f"{url.rstrip('/')}/v1/loops/{loop}/quality/{action}"
    try:
        response = httpx.post(target, json=body, timeout=TIMEOUT_S, trust_env=False)
    except httpx.ConnectError:
        raise QualityActionError(
            f"no agent answering at {url} (connection refused); is it running?"
        ) from None
    except httpx.TimeoutException:
        raise QualityActionError(
            f"the agent at {url} did not answer within {TIMEOUT_S:g} s; run "
            "`edge-agent quality status` to see whether it was done"
        ) from None
    except httpx.HTTPError as exc:
        raise QualityActionError(f"cannot reach the agent at {url}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200:
        detail = answer.get("detail") if isinstance(answer, dict) else None
        if not isinstance(detail, str):
            detail = f"{target} answered HTTP {response.status_code}"
        raise QualityActionError(f"{action} refused: {detail}")
    if not isinstance(answer, dict):
        raise QualityActionError(f"{target} did not answer a JSON object")
    return answer


def restore(url: str, loop: str, *, operator: str, reason: str) -> str:
    """Step ``loop`` back up; the line that says what was cleared."""
    answer = post_action(url, loop, "restore", {"operator": operator, "reason": reason})
    cleared = answer.get("restored") or {}
    return (f"loop {loop} stepped back up by {operator}: {answer.get('mode')} "
            f"(in effect {answer.get('effective_mode')}); cleared the step-down of "
            f"{cleared.get('model')} {cleared.get('version')}: "
            f"{cleared.get('reason')}")  # fmt: skip


def promote(url: str, loop: str, version: str, *, operator: str, reason: str) -> str:
    """Promote ``loop``'s challenger ``version``; the line that says what the loop runs now."""
    body = {"operator": operator, "reason": reason, "version": version}
    answer = post_action(url, loop, "promote", body)
    return (f"loop {loop}: challenger {answer.get('promoted')} promoted by {operator} "
            f"(was {answer.get('previous')})")  # fmt: skip


def run_quality_status(url: str, loop: str | None, *, plain: bool | None = None) -> int:
    """Print each loop's (or ``loop``'s) model against its challenger, test by test."""
    try:
        doc = fetch_status(url)
    except StatusUnavailableError as exc:
        raise QualityActionError(str(exc)) from None
    loops = quality_loops(doc)
    if not loops:
        raise QualityActionError(f"the agent at {url} shows no model quality (no truth loop)")
    if loop is not None:
        chosen = [lp for lp in loops if lp.get("name") == loop]
        if not chosen:
            names = ", ".join(str(lp.get("name")) for lp in loops)
            raise QualityActionError(f"loop {loop!r}: not running in the agent (loops: {names})")
        loops = chosen
    plain = not sys.stdout.isatty() if plain is None else plain
    console = Console(color_system=None if plain else "auto", markup=False,
                      highlight=not plain, width=160 if plain else None,
                      soft_wrap=False)  # fmt: skip
    now = (doc.get("agent") or {}).get("time")
    try:
        for i, lp in enumerate(loops):
            if i:
                console.print()
            render_comparison(lp, now, console, plain=plain)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # another version's shape
        raise QualityActionError(f"cannot read the model quality from {url}: {exc!r}") from None
    return 0
