"""`edge-agent status`: ask a running agent's local API for /status and print it readably.

Owns: where to ask (``--url``, or ``[api]`` of the configuration file: a wildcard listen
address is asked on loopback), the one-line error when nobody answers, and the rendering
(agent, health, sources with their tags by quality, Modbus error counters and a line saying
why a source is degraded or down, buffer with its outage budget, sync with a drain progress
bar while a backlog drains, control loops, models; the loops' model quality through
agent.api.quality_view) with rich; plain text, no colours and no box drawing when stdout is not
a terminal.
Must not: import the daemon's components or the simulator, change anything in the agent (one
GET), or print a traceback for an agent that is down, slow or answering nonsense.
Invariants: exit 0 after printing a status, 1 when no usable status came back (one line on
stderr naming the URL and what happened).
"""

from __future__ import annotations

import math
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from agent.api.quality_view import render_quality
from agent.config.settings import ApiSection

__all__ = [
    "StatusConfigError",
    "StatusUnavailableError",
    "api_url",
    "fetch_status",
    "render_status",
    "run_status",
    "url_from_config",
]

TIMEOUT_S = 5.0
_ENV_PREFIX = "EDGE_AGENT__API__"


class StatusUnavailableError(Exception):
    """No usable status from the agent; the message is the one line to print."""


class StatusConfigError(Exception):
    """The configuration file does not say where the API is; the one line to print."""


def api_url(host: str, port: int) -> str:
    """The URL to reach an API listening on ``host:port`` from this machine."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def url_from_config(path: Path) -> str:
    """The API's URL from ``[api]`` of ``path`` and ``EDGE_AGENT__API__*`` variables.

    Reads nothing else of the file: the secrets it names are often readable by the agent's
    user only (or exist inside the service only, as systemd credentials). Raises
    StatusConfigError for an unreadable file or a bad ``[api]``, StatusUnavailableError when
    the API is disabled.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8")).get("api", {})
    except OSError as exc:
        raise StatusConfigError(
            f"{path}: expected a readable TOML file, found {exc.strerror}"
        ) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StatusConfigError(f"{path}: expected valid TOML, found {exc}") from None
    if not isinstance(raw, dict):
        raise StatusConfigError(f"{path}: api: expected a table, found {type(raw).__name__}")
    for name, value in os.environ.items():
        if name.upper().startswith(_ENV_PREFIX):
            raw[name[len(_ENV_PREFIX) :].lower()] = value
    try:
        api = ApiSection.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in ("api", *first["loc"]))
        raise StatusConfigError(f"{path}: {where}: {first['msg']}") from None
    if not api.enabled:
        raise StatusUnavailableError(
            f"the local API is off in {path} ([api] enabled = false): no status to ask for"
        )
    return api_url(api.host, api.port)


def fetch_status(url: str, *, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """GET ``{url}/status``; raises StatusUnavailableError with a one-line reason."""
    target = url.rstrip("/") + "/status"
    try:
        response = httpx.get(target, timeout=timeout_s, trust_env=False)
    except httpx.ConnectError:
        raise StatusUnavailableError(
            f"no agent answering at {url} (connection refused); is it running?"
        ) from None
    except httpx.TimeoutException:
        raise StatusUnavailableError(
            f"the agent at {url} did not answer within {timeout_s:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise StatusUnavailableError(f"cannot reach the agent at {url}: {exc}") from None
    if response.status_code != 200:
        raise StatusUnavailableError(f"{target} answered HTTP {response.status_code}")
    try:
        doc = response.json()
    except ValueError:
        raise StatusUnavailableError(f"{target} did not answer JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("agent"), dict):
        raise StatusUnavailableError(f"{target} did not answer an edge-agent status document")
    return doc


# -- formatting ------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if abs(n) < 1000:
        return f"{n:.0f} B"
    exponent = min(3, int(math.log10(abs(n)) // 3))
    return f"{n / 1000**exponent:.1f} {('B', 'kB', 'MB', 'GB')[exponent]}"


def _counts(mapping: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (mapping or {}).items()) or "-"


class _View:
    def __init__(self, console: Console, plain: bool) -> None:
        self.console, self.plain = console, plain

    def table(self, title: str, *columns: str) -> Table:
        shape = None if self.plain else box.SIMPLE_HEAD
        table = Table(title=title, title_justify="left", box=shape, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column)
        return table

    def heading(self, text: str) -> None:
        self.console.print(Text(text, style="" if self.plain else "bold"))

    def line(self, label: str, value: str, style: str = "") -> None:
        text = Text(f"  {label:<16}")
        text.append(value, style="" if self.plain else style)
        self.console.print(text)

    def bar(self, done: int, total: int, note: str) -> None:
        if self.plain:
            width = 30
            filled = round(width * done / total) if total else width
            percent = 100 * done / total if total else 100.0
            bar = f"[{'#' * filled}{'.' * (width - filled)}]"
            self.console.print(Text(f"  draining        {bar} {percent:.0f}% {note}"))
            return
        table = Table.grid(padding=(0, 1))
        progress = ProgressBar(total=total, completed=done, width=30)
        table.add_row(Text(f"  {'draining':<15}"), progress, note)
        self.console.print(table)


def _agent(v: _View, doc: dict[str, Any]) -> None:
    a = doc["agent"]
    config = a.get("config") or {}
    digest = (config.get("sha256") or "?")[:12]
    v.heading(f"agent {a.get('id')}  (edge-agent {a.get('version')}, pid {a.get('pid')})")
    v.line("uptime", _duration(a.get("uptime_s")))
    memory = a.get("memory") or {}
    if memory.get("rss_bytes") is not None:
        v.line("memory", f"{_bytes(memory['rss_bytes'])} resident, "
                         f"peak {_bytes(memory.get('peak_rss_bytes'))}")  # fmt: skip
    v.line("config", f"{config.get('path')}  sha256 {digest}")
    health = doc.get("health") or {}
    healthy, ready = health.get("healthy"), health.get("ready")
    v.line("health", "ok" if healthy else "STALLED: " + ", ".join(health.get("stalled", [])),
           "green" if healthy else "bold red")  # fmt: skip
    v.line("ready", "yes" if ready else f"no ({health.get('ready_detail')})",
           "green" if ready else "yellow")  # fmt: skip
    for w in health.get("watched", []):
        flag = "STALLED" if w.get("stalled") else "ok"
        v.line(f"  {w.get('name')}", f"{flag}, silent {_duration(w.get('silent_s'))}")
    models = doc.get("models") or {}
    if models:
        v.line("models", _counts(models))


def _drivers(v: _View, doc: dict[str, Any]) -> None:
    table = v.table("sources", "name", "kind", "state", "tags good/unc/bad",
                    "exceptions/timeouts/garbled of requests", "samples", "reconnects")  # fmt: skip
    for d in doc.get("drivers", []):
        state, health, t = d.get("state", "?"), d.get("health"), d.get("tags") or {}
        health = health or ("ok" if state == "connected" else "down")  # an older agent's doc
        style = {"ok": "green", "degraded": "yellow"}.get(health, "red")
        errors = "-"
        if d.get("requests_total") is not None:  # a Modbus source
            errors = (f"{d['exceptions_total']}/{d['timeouts_total']}/{d['garbled_total']} "
                      f"of {d['requests_total']}")  # fmt: skip
        table.add_row(d.get("name"), d.get("kind"),
                      Text(f"{state}, DEGRADED" if health == "degraded" else state,
                           style="" if v.plain else style),
                      f"{t['good']}/{t['uncertain']}/{t['bad']}" if t else "-", errors,
                      str(d.get("samples_total")), str(d.get("reconnects_total")))  # fmt: skip
    if not doc.get("drivers"):
        table.add_row("(none configured)", *[""] * 7)
    v.console.print(table)
    for d in doc.get("drivers", []):  # why a source is not plainly healthy, in one line
        named = ", ".join(f"{x.get('tag')} {x.get('status')}" for x in d.get("not_good") or [])
        if d.get("problems") or named:
            why = "; ".join(d.get("problems") or []) + (f": {named}" if named else "")
            v.line(str(d.get("name")), why, "yellow")


def _buffer(v: _View, doc: dict[str, Any]) -> None:
    b = doc.get("buffer")
    v.heading("buffer")
    if b is None:
        v.line("state", "not open")
        return
    fill = b.get("fill_ratio")
    share = f" ({100 * fill:.1f}%)" if fill is not None else ""
    v.line("used", f"{_bytes(b.get('bytes_used'))} of {_bytes(b.get('max_bytes'))}{share}")
    v.line("unsent", f"{b.get('blocks_pending')} blocks, {b.get('samples_pending')} samples")
    v.line("oldest unsent", _duration(b.get("oldest_unsent_age_s")))
    v.line("growth", f"{_bytes(b.get('bytes_per_hour'))}/h")
    hours = b.get("hours_left")
    left = "no growth" if hours is None else f"{_duration(hours * 3600)} until eviction starts"
    v.line("outage budget", left, "yellow" if hours is not None and hours < 24 else "")
    v.line("evictions", _counts(b.get("evictions")))
    v.line("quarantined", str(b.get("quarantined")))
    if b.get("dropped_samples"):
        v.line("dropped", f"{_counts(b.get('dropped_samples'))} samples", "red")
    if b.get("problem"):
        v.line("PROBLEM", str(b.get("problem")), "red")


def _sync(v: _View, doc: dict[str, Any]) -> None:
    sync, u = doc.get("sync") or {}, doc.get("uploader")
    v.heading("sync")
    if u is None:
        v.line("state", "off" if not sync.get("enabled") else "not started")
        return
    failing = u.get("consecutive_failures") or 0
    v.line("receiver", str(sync.get("url")))
    v.line("state", f"failing ({failing} in a row): {u.get('last_error')}" if failing else "ok",
           "red" if failing else "green")  # fmt: skip
    v.line("acked", f"{u.get('acks')} blocks ({u.get('duplicates')} duplicates), "
           f"{_bytes(u.get('bytes_sent'))} sent")  # fmt: skip
    v.line("errors", f"{u.get('retries')} retried, {u.get('quarantined')} quarantined")
    mean, last = u.get("latency_mean_s"), u.get("last_latency_s") or 0.0
    v.line(
        "latency", "-" if mean is None else f"mean {1000 * mean:.0f} ms, last {1000 * last:.0f} ms"
    )
    p = u.get("progress") or {}
    remaining, pending = (
        p.get("remaining_blocks") or 0,
        (doc.get("buffer") or {}).get("blocks_pending"),
    )
    if p.get("draining") and pending:
        done = p.get("drained_blocks") or 0
        rate = p.get("blocks_per_s")
        note = f"{done}/{done + remaining} blocks"
        note += f", {rate:.1f} blocks/s" if rate else ""
        note += f", ETA {_duration(p.get('eta_s'))}" if p.get("eta_s") is not None else ""
        v.bar(done, done + remaining, note)


def _loops(v: _View, doc: dict[str, Any]) -> None:
    loops = doc.get("loops") or []
    table = v.table("loops", "name", "mode", "state", "model", "cycles", "outcomes", "writes",
                    "refused by", "p50/p99")  # fmt: skip
    for lp in loops:
        refused = {x["gate"]: x["count"] for x in lp.get("verdicts", []) if x["verdict"] != "pass"}
        inf = lp.get("inference") or {}
        p50, p99 = inf.get("p50_s"), inf.get("p99_s")
        timing = "-" if p50 is None else f"{1000 * p50:.1f}/{1000 * (p99 or 0):.1f} ms"
        table.add_row(lp.get("name"), lp.get("mode"), lp.get("state"),
                      lp.get("model_version") or "-", str(lp.get("cycles")),
                      _counts(lp.get("outcomes")), _counts(lp.get("writes")), _counts(refused),
                      timing)  # fmt: skip
    if not loops:
        table.add_row("(none)", *[""] * 8)
    v.console.print(table)


def render_status(doc: dict[str, Any], console: Console, *, plain: bool) -> None:
    """Print the status document ``doc`` (from /status) on ``console``."""
    v = _View(console, plain)
    for section in (_agent, _drivers, _buffer, _sync, _loops):
        section(v, doc)
        if section is not _loops:
            console.print()
    render_quality(doc, console, plain=plain)


def run_status(url: str, *, plain: bool | None = None) -> int:
    """Fetch and print the status of the agent at ``url`` (exit code 0); raises
    StatusUnavailableError when no usable status came back."""
    doc = fetch_status(url)
    plain = not sys.stdout.isatty() if plain is None else plain
    console = Console(
        color_system=None if plain else "auto",
        markup=False,  # names and error texts are data, not rich markup
        highlight=not plain,
        width=120 if plain else None,
        soft_wrap=False,
    )
    try:
        render_status(doc, console, plain=plain)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # another version's shape
        raise StatusUnavailableError(f"cannot read the status from {url}: {exc!r}") from None
    return 0
