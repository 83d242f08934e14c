"""`edge-agent status` and `edge-agent quality status|restore|promote` as subprocesses, against
the local API served in this event loop over a real TruthLoop (or against nothing).

Every child process is awaited with asyncio: the API it asks runs in this event loop, so a
blocking wait would stall it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.support.env import clean_env
from tests.support.ports import free_port
from tests.support.quality_api import ACTIVE, CHALLENGER, degrade, quality_api

AGENT = [sys.executable, "-m", "agent"]
WAIT_S = 120.0  # the limit of a child's run: generous, a busy machine is only slower
WHY = ["--operator", "ana", "--reason", "lab re-calibrated"]


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *AGENT, *args, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_shows_the_step_down_and_each_tests_figures(tmp_path: Path) -> None:
    async with quality_api(tmp_path) as rig:
        await degrade(rig.truth)
        code, out, err = await cli("status", "--url", rig.url)
    assert (code, err) == (0, "")
    lines = [line.strip() for line in out.splitlines()]
    assert "model quality (against the lab)" in lines
    (head,) = [line for line in lines if line.startswith("separator ") and "model" in line]
    assert "closed_loop, in effect ADVISORY; model vrm-quality 1.0.0" in head
    (stepped,) = [line for line in lines if line.startswith("STEPPED DOWN")]
    assert "to advisory since 2023-11-16 04:13 UTC" in stepped
    assert "s2 bias -1.31 over " in stepped
    assert ("step up       edge-agent quality restore separator --operator NAME --reason TEXT"
            in lines)  # fmt: skip
    (s2, challenger_s2) = [line for line in lines if line.startswith("s2 ")]
    assert s2.startswith("s2            bias -1.31 MPa (raw -1.31), RMSE 1.31 vs declared 0.91 "
                         "(1.44x), 6 results  DEGRADED")  # fmt: skip
    assert challenger_s2.startswith("s2          bias -0.11 MPa (raw -0.11)")
    assert any(line.startswith("correction    s2 -1.31 MPa added to the raw") for line in lines)
    assert f"challenger    vrm-quality {CHALLENGER} (shadow)" in lines


async def test_quality_status_compares_active_and_challenger(tmp_path: Path) -> None:
    async with quality_api(tmp_path) as rig:
        await degrade(rig.truth)
        code, out, err = await cli("quality", "status", "separator", "--url", rig.url)
        unknown = await cli("quality", "status", "kiln", "--url", rig.url)
    assert (code, err) == (0, "")
    lines = [line.strip() for line in out.splitlines()]
    (header,) = [line for line in lines if line.startswith("test ")]
    assert f"active {ACTIVE}: bias (raw)" in header and f"challenger {CHALLENGER}" in header
    (row,) = [line for line in lines if line.startswith("s2 MPa")]
    assert row.split() == ["s2", "MPa", "0.91", "-1.31", "(-1.31)", "1.31", "1.44x",
                           "DEGRADED", "6", "-0.11", "(-0.11)", "0.11", "0.12x", "6"]  # fmt: skip
    assert any(line.startswith("promote       edge-agent quality promote separator 1.1.0")
               for line in lines)  # fmt: skip
    assert "limestone" not in out  # one loop asked, one shown
    code, out, err = unknown
    assert (code, out) == (1, "")
    assert (
        err == "edge-agent: loop 'kiln': not running in the agent (loops: separator, limestone)\n"
    )


async def test_restore_and_promote_print_what_was_done_and_the_refusals(tmp_path: Path) -> None:
    async with quality_api(tmp_path) as rig:
        await degrade(rig.truth)
        restored = await cli("quality", "restore", "separator", *WHY, "--url", rig.url)
        again = await cli("quality", "restore", "separator", *WHY, "--url", rig.url)
        wrong = await cli("quality", "promote", "separator", "9.9.9", *WHY, "--url", rig.url)
        promoted = await cli("quality", "promote", "separator", CHALLENGER, *WHY, "--url", rig.url)
        step = rig.truth.step_down("separator")
        ups = [a for a in rig.audit if a[0] == "quality_step_up"]
        promotions = list(rig.promoted)
    code, out, err = restored
    assert (code, err) == (0, "")
    assert out.startswith("loop separator stepped back up by ana: closed_loop (in effect "
                          "closed_loop); cleared the step-down of vrm-quality 1.0.0: s2 bias")  # fmt: skip
    assert step is None and len(ups) == 1
    assert again == (1, "", "edge-agent: restore refused: loop separator is not stepped down: "
                     "nothing to restore\n")  # fmt: skip
    assert wrong == (1, "", "edge-agent: promote refused: loop separator: 9.9.9 is not its "
                     f"challenger; its challenger is {CHALLENGER}\n")  # fmt: skip
    code, out, err = promoted
    assert (code, err) == (0, "")
    assert out == f"loop separator: challenger {CHALLENGER} promoted by ana (was {ACTIVE})\n"
    assert promotions == [("separator", CHALLENGER, "ana", "lab re-calibrated")]


async def test_no_agent_running_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("quality", "restore", "separator", *WHY), ("quality", "status"),
                 ("quality", "promote", "separator", "1.1.0", *WHY)):  # fmt: skip
        code, out, err = await cli(*args, "--url", url)
        assert (code, out) == (1, ""), args
        assert (
            err == f"edge-agent: no agent answering at {url} (connection refused); is it running?\n"
        )


async def test_restore_needs_operator_and_reason() -> None:
    code, out, err = await cli("quality", "restore", "separator", "--reason", "x")
    assert (code, out) == (2, "")
    assert "the following arguments are required: --operator" in err
    assert "Traceback" not in err
