"""`edge-agent demo` as a subprocess with stdout a pipe (plain lines): the whole story is
told, the summary's figures hold, the chart is a PNG, and nothing is left listening."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from agent.demo.scenario import KEYS
from agent.demo.show import demo_config_text

AGENT = [sys.executable, "-m", "agent"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _summary(out: str, name: str) -> dict[str, str]:
    match = re.search(rf"^summary: {name} (.*)$", out, re.M)
    assert match is not None, f"no 'summary: {name}' line in:\n{out}"
    return dict(pair.split("=", 1) for pair in match[1].split())


def _ports(out: str) -> list[int]:
    first = out.splitlines()[0]
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", first)]
    assert len(ports) == 3, first  # OPC UA, Modbus, the cloud receiver
    return ports


def _nobody_listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
    return True


@pytest.mark.timeout(600)  # a hang guard: a busy machine stretches the set-up
def test_the_demo_tells_the_whole_story_and_its_figures_hold(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [*AGENT, "demo", "--duration", "90", "--opcua-port", "0", "--modbus-port", "0"],
        capture_output=True, text=True, timeout=560, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    out = result.stdout
    said = re.findall(r"^announce: (\w+): ", out, re.M)
    assert sorted(said) == sorted(KEYS), said  # every announcement, once
    in_order = [k for k in said if k != "backlog_drained"]
    assert in_order == [k for k in KEYS if k != "backlog_drained"], said
    assert said.index("backlog_drained") > said.index("cloud_back"), said

    writes = re.findall(
        r"^write: loop=(\w+) from=([\d.]+) to=([\d.]+) readback=([\d.]+) .* writes=(\d+) run=(\d+) ",
        out,
        re.M,
    )
    assert {loop for loop, *_ in writes} == {"separator", "limestone"}, writes
    for _, _, to, readback, _, _ in writes:
        assert abs(float(to) - float(readback)) <= 0.5
    # A line names the newest write and the loop's count so far in this agent's run (on a busy
    # machine two writes of one loop may fall between two looks of the view): they add up.
    last_count = {(run, loop): int(n) for loop, *_, n, run in writes}

    # The operator baseline of plant-model 4.5, and a saving only at equal conformity.
    assert _summary(out, "baseline")["kind"] == "operator"
    conformity = _summary(out, "conformity")
    assert conformity["basis"] == "true_s28_hourly" and int(conformity["n"]) >= 5, conformity
    head = re.search(r"^summary: plant_hours=\S+ product_id=\d+ lower_mpa=(\S+)$", out, re.M)
    assert head is not None, out
    lower = float(head[1])
    equal = (float(conformity["agent_share"]) >= float(conformity["baseline_share"])
             and float(conformity["agent_min"]) >= lower)  # fmt: skip
    co2, saving = _summary(out, "co2_per_t"), _summary(out, "saving")
    assert saving["counted"] == str(equal).lower(), (conformity, saving)
    if equal:
        kg = float(co2["baseline"]) - float(co2["agent"])
        assert abs(float(saving["kg_per_t"]) - kg) <= 0.011, (co2, saving)
    else:
        assert saving["kg_per_t"] == "none" and "reason" in saving, saving
    assert re.search(r"^  Conformity, judged on the hidden true 28-day strength", out, re.M)
    samples = _summary(out, "samples")
    assert int(samples["sent"]) == int(samples["received"]) > 1000, samples
    assert samples["lost"] == "0"
    # Writes: the view's lines, the loops' counters and the audit's records agree.
    done = _summary(out, "writes")
    assert int(done["ok"]) == sum(last_count.values()) and int(done["failed"]) == 0, (done, writes)
    assert int(done["after_restart"]) >= 1, done  # the agent resumed after the restart
    assert done["counters_agree"] == "true", done
    assert int(done["setpoint_write_records"]) == int(done["ok"]) + int(done["cut_short"]), done
    totals = {loop: int(n) for loop, n in re.findall(r"^write: loop=(\w+) .* total=(\d+) ", out,
                                                      re.M)}  # fmt: skip
    for loop, total in totals.items():
        assert int(_summary(out, f"writes_{loop}")["ok"]) == total, (loop, totals)
    # The margin shown is prediction - target - k x RMSE; the target shown is inside the cap.
    demo = tomllib.loads(demo_config_text())
    cem2 = next(p for p in demo["products"] if p["id"] == 2)  # the product the demo grinds
    made = {lp["name"]: {**lp, **next((o for o in cem2.get("loops", [])
                                       if o["loop"] == lp["name"]), {})}
            for lp in demo["loops"]}  # fmt: skip
    envelopes = {name: (lp["envelope_min"], lp["envelope_max"]) for name, lp in made.items()}
    for loop, margin, terms, target in re.findall(
        r"^write: loop=(\w+) .* margin=(\S+) margin_terms=(\S+) target=(\S+) ", out, re.M
    ):
        predicted, aim, k_rmse = terms.split("-")
        k, rmse = k_rmse.split("x")
        assert abs(float(margin) - (float(predicted) - float(aim) - float(k) * float(rmse))) < 0.01
        lo, hi = envelopes[loop]
        assert lo <= float(target) <= hi, (loop, target)
    refused = {gate: int(n) for gate, n in _summary(out, "refused").items()}
    assert refused.get("handshake", 0) >= 1, refused  # the PLC in local after the restart
    assert refused.get("min_interval", 0) >= 1, refused
    assert _summary(out, "audit")["chain_ok"] == "true"
    # The truth loop: the lab's results (sample times published on the wall clock, windows
    # compressed with the plant) meet the predictions of their windows; a plant without
    # drift steps no loop down.
    assert _summary(out, "lab")["stepped_down"] == "0"
    for loop in ("separator", "limestone"):
        lab = _summary(out, f"lab_{loop}")
        assert int(lab["matched"]) >= 1 and lab["step_down"] == "no", lab
        assert int(lab["blaine_n"]) >= 1, lab
        assert abs(float(lab["blaine_bias"])) < 3 * float(lab["blaine_declared_rmse"]), lab
    assert re.search(r"^  Lab results matched .*: separator [1-9]", out, re.M), out

    chart = re.search(r"^chart: (.+\.png)$", out, re.M)
    assert chart is not None, out
    png = Path(chart[1])
    assert png.is_relative_to(tmp_path)
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    assert all(_nobody_listens(port) for port in _ports(out))


@pytest.mark.timeout(300)  # a hang guard: the waits below fail first
def test_sigterm_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [*AGENT, "demo", "--duration", "90", "--opcua-port", "0", "--modbus-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 120  # start-up and the first act: slower when busy
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("announce: remote_granted:") or time.monotonic() > deadline:
                break
        assert lines and lines[-1].startswith("announce: remote_granted:"), lines
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "demo stopped" in err and "Traceback" not in err, err
    assert "summary:" not in out
    assert all(_nobody_listens(port) for port in _ports(lines[0]))
    assert not list(tmp_path.glob("edge-agent-demo-*")), "the demo's state directory is left"
