"""Broken configuration files: each gives its exact message(s) and exit code 78, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli.main import main
from tests.support.config import replace_once

BASE = """\
[agent]
id = "mill-1"
state_dir = "state"

[[sources]]
kind = "opcua"
name = "plc"
endpoint = "opc.tcp://127.0.0.1:4840"
security_policy = "None"
security_mode = "None"

[[sources]]
kind = "modbus"
name = "packer"
host = "127.0.0.1"

[[tags]]
name = "Speed"
source = "plc"
address = "nsu=urn:mill;s=Mill/Speed"

[[tags]]
name = "SpeedSetpoint"
source = "plc"
address = "nsu=urn:mill;s=Mill/SpeedSetpoint"
writable = true
write_min = 850.0
write_max = 1100.0

[[tags]]
name = "Weight"
source = "packer"
address = "holding:100"
type = "float32"

[[loops]]
name = "separator"
model = "vrm-quality"
strategy = "direct"
output = "separator_speed"
target_tag = "SpeedSetpoint"
envelope_min = 880.0
envelope_max = 1050.0
max_step = 20.0
"""

Edit = Callable[[str], str]


def sub(old: str, new: str) -> Edit:
    """Replace the one `old` of the text: these cases are about the text (line numbers)."""
    return lambda text: replace_once(text, old, new)


def add(extra: str) -> Edit:
    return lambda text: text + extra


CASES: list[tuple[str, Edit, list[str]]] = [
    (
        "typo_key",
        sub('state_dir = "state"', 'stat_dir = "state"'),
        [
            "{f}:3: agent.stat_dir: expected did you mean 'state_dir'? one of the known keys: audit_retention_days, id, log_level, model_public_key_file, models_dir, shutdown_timeout_s, state_dir, found unknown key 'stat_dir'"
        ],
    ),
    (
        "unknown_section",
        add('\n[cloud]\nurl = "https://x"\n'),
        [
            "{f}:46: cloud: expected one of the known keys: agent, api, loops, product_selection, products, quality, sources, sync, tags, found unknown key 'cloud'"
        ],
    ),
    (
        "wrong_type_number",
        sub("max_step = 20.0", 'max_step = "twenty"'),
        ["{f}:44: loops[0].max_step: expected a number, found 'twenty' (text)"],
    ),
    (
        "wrong_type_bool",
        sub("writable = true", 'writable = "yes"'),
        ["{f}:26: tags[1].writable: expected true or false, found 'yes' (text)"],
    ),
    (
        "missing_agent_id",
        sub('id = "mill-1"\n', ""),
        ["{f}:1: agent.id: expected a value (this key is required), found nothing"],
    ),
    (
        "missing_agent_section",
        sub('[agent]\nid = "mill-1"\nstate_dir = "state"\n', ""),
        ["{f}: agent: expected a value (this key is required), found nothing"],
    ),
    (
        "unknown_source",
        sub('source = "packer"', 'source = "packr"'),
        [
            "{f}:32: tags[2].source: expected the name of a [[sources]] entry ('plc', 'packer'), found 'packr'"
        ],
    ),
    (
        "quality_tag_unknown",
        add(
            '\n[quality]\n[[quality.tags]]\ntest = "s2"\ntag = "LabS2"\nsample_time_tag = "Speed"\n'
        ),
        ["{f}:49: quality.tags[0].tag: expected the name of a [[tags]] entry, found 'LabS2'"],
    ),
    (
        "quality_csv_timezone",
        add('\n[quality.csv]\nfolder = "lims"\ntimezone = "Europe/Berln"\n'),
        [
            "{f}:48: quality.csv.timezone: expected an IANA time zone name such as 'Europe/Berlin' or 'UTC', found 'Europe/Berln'"
        ],
    ),
    (
        "quality_cloud_without_sync",
        add("\n[quality]\ncloud = true\n"),
        [
            "{f}:47: quality.cloud: expected [sync] enabled with a url to pull lab results from, found cloud = true without it"
        ],
    ),
    (
        "baseline_confirm_tag_unknown",
        sub("max_step = 20.0", 'max_step = 20.0\nbaseline_confirm_tag = "Confirm"'),
        [
            "{f}:45: loops[0].baseline_confirm_tag: expected the name of a [[tags]] entry, found 'Confirm'"
        ],
    ),
    (
        "quality_windows_that_never_judge",
        sub(
            "max_step = 20.0",
            "max_step = 20.0\n[loops.quality]\nresults = 10\nrmse_min_results = 20\n"
            'correction_results = 3\nstep_down_tests = ["s7"]',
        ),
        [
            "{f}:47: loops[0].quality.rmse_min_results: expected at most results (10): the RMSE is judged over the last results, found 20",
            "{f}:48: loops[0].quality.correction_results: expected at least min_results (5), or no offset is ever estimated, found 3",
            "{f}:49: loops[0].quality.step_down_tests: expected tests the loop monitors (['blaine', 'residue45', 's2', 's28']), found ['s7'] not in tests",
        ],
    ),
    (
        "quality_modbus_tag_without_sample_time",
        add('\n[quality]\n[[quality.tags]]\ntest = "s2"\ntag = "Weight"\n'),
        [
            "{f}:47: quality.tags[0].sample_time_tag: expected the tag holding the sample time: a Modbus value has no source time of its own (each poll would be a new result), found none"
        ],
    ),
    (
        "duplicate_tag",
        sub('name = "Weight"', 'name = "Speed"'),
        [
            "{f}:31: tags[2].name: expected a name not used by another entry of [[tags]], found 'Speed' again (first at tags[0])"
        ],
    ),
    (
        "duplicate_source",
        sub('name = "packer"', 'name = "plc"'),
        [
            "{f}:14: sources[1].name: expected a name not used by another entry of [[sources]], found 'plc' again (first at sources[0])",
            "{f}:32: tags[2].source: expected the name of a [[sources]] entry ('plc'), found 'packer'",
        ],
    ),
    (
        "writable_without_limits",
        sub("write_min = 850.0\nwrite_max = 1100.0\n", ""),
        [
            "{f}:22: tags[1].write_min: expected a number: a writable tag needs write_min and write_max, found nothing",
            "{f}:22: tags[1].write_max: expected a number: a writable tag needs write_min and write_max, found nothing",
        ],
    ),
    (
        "write_limits_inverted",
        sub("write_max = 1100.0", "write_max = 800.0"),
        ["{f}:28: tags[1].write_max: expected a number above write_min (850), found 800"],
    ),
    (
        "loop_target_not_writable",
        sub('target_tag = "SpeedSetpoint"', 'target_tag = "Speed"'),
        [
            "{f}:41: loops[0].target_tag: expected a tag with writable = true, found 'Speed', which is not writable"
        ],
    ),
    (
        "loop_envelope_outside_limits",
        sub("envelope_max = 1050.0", "envelope_max = 1200.0"),
        [
            "{f}:42: loops[0].envelope_min: expected an envelope inside the tag's write limits [850, 1100], found [880, 1200]"
        ],
    ),
    (
        "loop_envelope_inverted",
        sub("envelope_max = 1050.0", "envelope_max = 870.0"),
        [
            "{f}:36: loops[0]: expected envelope_min below envelope_max, found envelope_min 880 and envelope_max 870"
        ],
    ),
    (
        "closed_loop_without_handshake",
        sub('model = "vrm-quality"', 'model = "vrm-quality"\nmode = "closed_loop"'),
        [
            "{f}:39: loops[0].mode: expected [agent] model_public_key_file set: closed_loop runs only signed models, found no public key",
            "{f}:36: loops[0].readback_tag: expected a tag name: mode 'closed_loop' needs readback_tag, found nothing",
            "{f}:36: loops[0].enable_tag: expected a tag name: mode 'closed_loop' needs enable_tag, found nothing",
            "{f}:36: loops[0].heartbeat_echo_tag: expected a tag name: mode 'closed_loop' needs heartbeat_echo_tag, found nothing",
            "{f}:36: loops[0].heartbeat_tag: expected a tag name: mode 'closed_loop' needs heartbeat_tag, found nothing",
            "{f}:36: loops[0].inputs: expected at least one [[loops.inputs]], found none",
        ],
    ),
    (
        "unknown_mode",
        sub('model = "vrm-quality"', 'model = "vrm-quality"\nmode = "auto"'),
        [
            "{f}:39: loops[0].mode: expected one of 'off', 'shadow', 'advisory' or 'closed_loop', found 'auto' (text)"
        ],
    ),
    (
        "malformed_node_id",
        sub('address = "nsu=urn:mill;s=Mill/Speed"', 'address = "nsu=urn:mill;x=Speed"'),
        [
            "{f}:20: tags[0].address: expected an OPC UA node id like 'nsu=urn:plant:mill;s=Plant/Mill1/FeedRate' or 'ns=2;i=1001', found 'nsu=urn:mill;x=Speed'"
        ],
    ),
    (
        "node_id_numeric_out_of_range",
        sub('address = "nsu=urn:mill;s=Mill/Speed"', 'address = "ns=2;i=4294967296"'),
        [
            "{f}:20: tags[0].address: expected a numeric identifier 0..4294967295 after 'i=', found 'ns=2;i=4294967296'"
        ],
    ),
    (
        "modbus_address_out_of_range",
        sub('address = "holding:100"', 'address = "holding:70000"'),
        [
            "{f}:33: tags[2].address: expected an address 0..65535 in a Modbus address 'TABLE:ADDRESS[.BIT]' with TABLE one of coil, discrete_input, holding, input and a zero-based ADDRESS 0..65535 (e.g. 'holding:100' or 'holding:7.3'), found 'holding:70000'"
        ],
    ),
    (
        "modbus_value_past_end",
        sub('address = "holding:100"', 'address = "holding:65535"'),
        [
            "{f}:33: tags[2].address: expected a float32 (2 registers) ending at or below address 65535, found 'holding:65535', which ends at 65536"
        ],
    ),
    (
        "modbus_unknown_table",
        sub('address = "holding:100"', 'address = "register:100"'),
        [
            "{f}:33: tags[2].address: expected a Modbus address 'TABLE:ADDRESS[.BIT]' with TABLE one of coil, discrete_input, holding, input and a zero-based ADDRESS 0..65535 (e.g. 'holding:100' or 'holding:7.3'), found 'register:100'"
        ],
    ),
    (
        "modbus_writable_input_register",
        sub(
            'address = "holding:100"\ntype = "float32"',
            'address = "input:100"\ntype = "float32"\nwritable = true\nwrite_min = 0\nwrite_max = 1',
        ),
        [
            "{f}:35: tags[2].writable: expected false: the Modbus table is read-only (input); writable tags live in coil or holding, found true"
        ],
    ),
    (
        "modbus_unit_id_out_of_range",
        sub('type = "float32"', 'type = "float32"\nunit_id = 300'),
        ["{f}:35: tags[2].unit_id: expected a number <= 255, found 300 (number)"],
    ),
    (
        "modbus_unknown_type",
        sub('type = "float32"', 'type = "real"'),
        [
            "{f}:34: tags[2].type: expected one of 'bool', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64', 'float32', 'float64' or 'string', found 'real' (text)"
        ],
    ),
    (
        "negative_interval",
        sub('host = "127.0.0.1"', 'host = "127.0.0.1"\npoll_interval_s = -1'),
        ["{f}:16: sources[1].poll_interval_s: expected a number > 0, found -1 (number)"],
    ),
    (
        "unknown_source_kind",
        sub('kind = "modbus"', 'kind = "profinet"'),
        ["{f}:13: sources[1].kind: expected one of 'opcua', 'modbus', found 'profinet'"],
    ),
    (
        "bad_endpoint",
        sub('endpoint = "opc.tcp://127.0.0.1:4840"', 'endpoint = "http://127.0.0.1:4840"'),
        [
            "{f}:8: sources[0].endpoint: expected an OPC UA endpoint URL like 'opc.tcp://10.0.0.5:4840', found 'http://127.0.0.1:4840' (text)"
        ],
    ),
    (
        "security_half_none",
        sub('security_mode = "None"', 'security_mode = "SignAndEncrypt"'),
        [
            "{f}:5: sources[0]: expected security_policy and security_mode both 'None' (explicitly insecure) or both secure, found security_policy 'None' with security_mode 'SignAndEncrypt'"
        ],
    ),
    (
        "inline_password",
        sub(
            'security_mode = "None"', 'security_mode = "None"\nusername = "u"\npassword = "hunter2"'
        ),
        [
            "{f}:12: sources[0].password: expected the secret in a file: password_file = '/etc/edge-agent/...' or password_credential = 'name' (systemd LoadCredential=); never inline, found an inline secret (refused; its value is not shown)"
        ],
    ),
    (
        "username_without_password",
        sub(
            'security_policy = "None"\nsecurity_mode = "None"',
            'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"\nusername = "u"',
        ),
        [
            "{f}:5: sources[0].password_file: expected password_file = '/path/to/file' or password_credential = 'name' (systemd credential), found neither"
        ],
    ),
    (
        "missing_password_file",
        sub(
            'security_policy = "None"\nsecurity_mode = "None"',
            'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"\nusername = "u"\npassword_file = "nope.txt"',
        ),
        [
            "{f}:12: sources[0].password_file: expected a readable secret file, found {d}/nope.txt: No such file or directory"
        ],
    ),
    (
        "world_readable_password",
        sub(
            'security_policy = "None"\nsecurity_mode = "None"',
            'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"\nusername = "u"\npassword_file = "open.txt"',
        ),
        [
            "{f}:12: sources[0].password_file: expected a secret file not readable by others (chmod 600 or 640), found {d}/open.txt with mode 0644"
        ],
    ),
    (
        "credential_without_systemd",
        sub(
            'security_policy = "None"\nsecurity_mode = "None"',
            'security_policy = "Basic256Sha256"\nsecurity_mode = "SignAndEncrypt"\nusername = "u"\npassword_credential = "opcua"',
        ),
        [
            "{f}:12: sources[0].password_credential: expected $CREDENTIALS_DIRECTORY set by systemd (LoadCredential=), found not set"
        ],
    ),
    (
        "password_over_insecure_channel",
        sub(
            'security_mode = "None"',
            'security_mode = "None"\nusername = "u"\npassword_file = "private.txt"',
        ),
        [
            "{f}:11: sources[0].username: expected a security_policy and security_mode other than 'None' to send a password (or no username, for an anonymous session), found security_policy 'None'"
        ],
    ),
    (
        "sync_plain_http_remote",
        add('\n[sync]\nurl = "http://cloud.example.com/ingest"\n'),
        [
            "{f}:47: sync.url: expected an https:// URL (plain http only to 127.0.0.1 or localhost), found 'http://cloud.example.com/ingest'"
        ],
    ),
    (
        "sync_enabled_without_url",
        add("\n[sync]\nenabled = true\n"),
        [
            "{f}:46: sync.url: expected the cloud ingest URL (https://...), or enabled = false, found nothing"
        ],
    ),
    (
        "sync_buffer_too_small",
        add("\n[sync]\nenabled = false\nmax_buffer_bytes = 1000\n"),
        ["{f}:48: sync.max_buffer_bytes: expected a number >= 1000000, found 1000 (number)"],
    ),
    (
        "api_port_out_of_range",
        add("\n[api]\nport = 70000\n"),
        ["{f}:47: api.port: expected a number <= 65535, found 70000 (number)"],
    ),
    (
        "loop_input_unknown_tag",
        add('\n[[loops.inputs]]\nfeature = "speed"\ntag = "Sped"\n'),
        ["{f}:48: loops[0].inputs[0].tag: expected the name of a [[tags]] entry, found 'Sped'"],
    ),
    (
        "toml_syntax_error",
        sub('id = "mill-1"', 'id = "mill-1'),
        [
            "{f}: (syntax): expected valid TOML, found Illegal character '\\n' (at line 2, column 13)"
        ],
    ),
    (
        "several_problems_at_once",
        lambda t: sub('name = "Weight"', 'name = "Speed"')(
            sub("stat_dir", "x")(sub('state_dir = "state"', 'stat_dir = "state"')(t))
        ),
        [
            "{f}:3: agent.x: expected one of the known keys: audit_retention_days, id, log_level, model_public_key_file, models_dir, shutdown_timeout_s, state_dir, found unknown key 'x'",
            "{f}:31: tags[2].name: expected a name not used by another entry of [[tags]], found 'Speed' again (first at tags[0])",
        ],
    ),
]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The folder of the file; no EDGE_AGENT__ override or credential (tests/conftest.py)."""
    (tmp_path / "open.txt").write_text("hunter2\n")
    (tmp_path / "open.txt").chmod(0o644)
    (tmp_path / "private.txt").write_text("hunter2\n")
    (tmp_path / "private.txt").chmod(0o600)
    return tmp_path


def test_base_config_is_valid(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_dir / "agent.toml"
    path.write_text(BASE)
    assert main(["check", "--config", str(path)]) == 0
    assert "OK: agent 'mill-1', 2 sources, 3 tags, 1 loops, sync off" in capsys.readouterr().out


def test_there_are_at_least_25_cases() -> None:
    assert len(CASES) >= 25
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_broken_config(
    name: str,
    edit: Edit,
    expected: list[str],
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config_dir / "agent.toml"
    path.write_text(edit(BASE))
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--config", str(path)])
    assert exit_info.value.code == 78
    err = capsys.readouterr().err.splitlines()
    want = [line.format(f=path, d=config_dir) for line in expected]
    count = len(want)
    assert err == [
        *want,
        f"edge-agent: {count} configuration problem{'s' * (count != 1)} in "
        f"{path}; nothing was started",
    ]
    assert "hunter2" not in "\n".join(err)


# -- handshake tags: the heartbeat must be able to count (issue 12, item 1) ------------------

HANDSHAKE = """
[[tags]]
name = "Remote"
source = "plc"
address = "nsu=urn:mill;s=Mill/RemoteActive"

[[tags]]
name = "Heartbeat"
source = "packer"
address = "holding:10"
type = "uint16"
writable = true
write_min = 0
write_max = 65535

[[tags]]
name = "Echo"
source = "packer"
address = "holding:11"
type = "uint16"
"""
CLOSED_LOOP = """max_step = 20.0
mode = "closed_loop"
readback_tag = "Speed"
enable_tag = "Remote"
heartbeat_tag = "Heartbeat"
heartbeat_echo_tag = "Echo"
"""


def closed_loop(*edits: Edit) -> Edit:
    """BASE with the handshake tags and a closed loop using them, then `edits`."""

    def edit(text: str) -> str:
        text = sub('state_dir = "state"', 'state_dir = "state"\nmodel_public_key_file = "k.pem"')(
            text
        )
        text = sub("[[loops]]", HANDSHAKE.lstrip() + "\n[[loops]]")(text)
        text = sub("max_step = 20.0\n", CLOSED_LOOP)(text)
        for more in edits:
            text = more(text)
        return text + '\n[[loops.inputs]]\nfeature = "speed"\ntag = "Speed"\n'

    return edit


HEARTBEAT_EXPECTED = (
    "expected a heartbeat tag that can count: a whole-number or float type (not bool or "
    "string), scale 1 and offset 0, and write limits spanning at least {n} whole numbers "
    "the type holds"
)
HANDSHAKE_CASES: list[tuple[str, Edit, list[str]]] = [
    (
        "heartbeat_on_a_coil",
        closed_loop(sub('address = "holding:10"\ntype = "uint16"', 'address = "coil:10"')),
        ["{f}:68: loops[0].heartbeat_tag: " + HEARTBEAT_EXPECTED.format(n=16)
         + ", found 'Heartbeat', a bool tag"],
    ),
    (
        "heartbeat_of_ten_values",
        closed_loop(sub("write_min = 0\nwrite_max = 65535", "write_min = 0\nwrite_max = 9")),
        ["{f}:69: loops[0].heartbeat_tag: " + HEARTBEAT_EXPECTED.format(n=16)
         + ", found 'Heartbeat' with write limits [0, 9]: 10 whole numbers in its uint16 type"],
    ),
    (
        "heartbeat_range_below_the_echo_lag",
        closed_loop(sub("write_max = 65535", "write_max = 30"),
                    add("heartbeat_echo_lag_max = 20\n")),
        ["{f}:69: loops[0].heartbeat_tag: " + HEARTBEAT_EXPECTED.format(n=42)
         + " (twice heartbeat_echo_lag_max + 1 = 42), found 'Heartbeat' with write limits "
         "[0, 30]: 31 whole numbers in its uint16 type"],
    ),
    (
        "heartbeat_scaled_opcua_node",
        closed_loop(sub('source = "packer"\naddress = "holding:10"\ntype = "uint16"',
                        'source = "plc"\naddress = "nsu=urn:mill;s=Mill/Heartbeat"\nscale = 0.1')),
        ["{f}:69: loops[0].heartbeat_tag: " + HEARTBEAT_EXPECTED.format(n=16)
         + ", found 'Heartbeat' with scale 0.1 and offset 0"],
    ),
    (
        "echo_and_enable_that_cannot_carry_them",
        closed_loop(sub('address = "holding:11"\ntype = "uint16"', 'address = "coil:11"'),
                    sub('address = "nsu=urn:mill;s=Mill/RemoteActive"',
                        'address = "holding:30"\ntype = "string"\nlength = 2'),
                    sub('source = "plc"\naddress = "holding:30"', 'source = "packer"\naddress = "holding:30"')),
        ["{f}:69: loops[0].enable_tag: expected a tag that reads true/false or 0/1 (not a "
         "string), found 'Remote', a string tag",
         "{f}:71: loops[0].heartbeat_echo_tag: expected a tag that reads back a counter (a "
         "whole-number or float type), found 'Echo', a bool tag"],
    ),
]  # fmt: skip


def test_a_usable_handshake_passes(config_dir: Path) -> None:
    """The handshake cases' starting point is valid: each case's lines are its own edit's."""
    from agent.config.loader import load_config

    path = config_dir / "agent.toml"
    path.write_text(closed_loop()(BASE))
    assert load_config(path).settings.loops[0].heartbeat_tag == "Heartbeat"


@pytest.mark.parametrize(
    ("name", "edit", "expected"), HANDSHAKE_CASES, ids=[c[0] for c in HANDSHAKE_CASES]
)
def test_broken_handshake_tags(
    name: str,
    edit: Edit,
    expected: list[str],
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    test_broken_config(name, edit, expected, config_dir, capsys)


# -- the echo must hold the heartbeat's counter too (issue 12, item 1, review) ---------------

WIDE_HEARTBEAT = sub('type = "uint16"\nwritable = true\nwrite_min = 0\nwrite_max = 65535',
                     'type = "uint32"\nwritable = true\nwrite_min = 0\nwrite_max = 4294967295')  # fmt: skip


def test_a_uint32_heartbeat_with_a_uint16_echo_passes_check(config_dir: Path) -> None:
    """The usual 16-bit echo of a 32-bit heartbeat: the counter counts where both hold it."""
    from agent.config.checks_loops import shared_counter
    from agent.config.heartbeat_counter import CounterRange
    from agent.config.loader import load_config

    path = config_dir / "agent.toml"
    path.write_text(closed_loop(WIDE_HEARTBEAT)(BASE))
    settings = load_config(path).settings
    tags = {t.name: t for t in settings.tags}
    assert shared_counter(settings.loops, "Heartbeat", tags) == CounterRange(0, 65535)


def test_an_echo_too_narrow_for_the_heartbeat_is_refused(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit = closed_loop(
        sub('type = "uint16"\nwritable = true\nwrite_min = 0\nwrite_max = 65535',
            'type = "uint32"\nwritable = true\nwrite_min = 100000\nwrite_max = 200000'),
    )  # fmt: skip
    expected = [
        "{f}:70: loops[0].heartbeat_echo_tag: expected an echo tag that can read back at least "
        "16 of the heartbeat's values 100000..200000 (the counter wraps where both the "
        "heartbeat and its echo hold it), found 'Echo', a uint16 tag (0..65535): 0 of them"
    ]
    test_broken_config("echo_too_narrow", edit, expected, config_dir, capsys)
