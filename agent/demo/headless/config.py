"""The configuration of a headless agent on the simulated mill: config/demo.toml as data, its
loops closed and cadenced for sim time, the lab's tags for the truth loop, written as TOML.

Owns: `rig_config` (the demo configuration reduced to the loops asked for, each in closed loop
at `cadence_s`, `[loops.quality]` on the lab tests of LAB_TESTS, `[quality]` reading each
test from its tag with the `<Tag>SampleTime` companion the simulator publishes, models and
state in the rig's folder, no sync, no API, no Modbus source: the rig feeds the mill's tags
only) and `dumps`, a small TOML writer for the shapes a configuration uses.
Must not: edit TOML as text, guess a key that is not there (a missing key is a KeyError naming
it), or write what tomllib would read back differently.
Invariants: tomllib.loads(dumps(doc)) == doc for tables, arrays of tables, strings, numbers,
booleans and lists of scalars; the written file passes agent.config.loader.load_config.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.demo.lab_record import TESTS

__all__ = ["LAB_TESTS", "MODELS", "dumps", "rig_config"]

Table = dict[str, Any]
_HERE = Path(__file__).resolve().parent.parent  # agent/demo
MODELS = next(
    (p for p in (_HERE.parents[1] / "models", _HERE / "models")
     if (p / "demo-signing-key.pub.pem").is_file()),
    _HERE.parents[1] / "models",
)  # fmt: skip
"""The demo's models: models/ of the source tree, or the copy packaged inside the wheel (the
same lookup as agent.demo.stage, which this module must not import: stage imports the
evaluation, which imports the rig)."""


def demo_config_text() -> str:
    """config/demo.toml from the source tree, or the copy packaged inside the wheel."""
    for candidate in (_HERE.parents[1] / "config" / "demo.toml", _HERE / "demo.toml"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError("config/demo.toml is missing from this installation")


LAB_TESTS = ("blaine", "residue45", "s2", "s28")
"""The lab tests the loops' model is judged on (its outputs), each from its tag."""


def rig_config(
    folder: Path, *, product: str, loops: Sequence[str] | None = None, cadence_s: float = 600.0,
    quality: Mapping[str, object] | None = None, source: Mapping[str, object] | None = None,
) -> Path:  # fmt: skip
    """folder/agent.toml: config/demo.toml with the loops named in `loops` (None: all of
    them) in closed loop every `cadence_s`, `[loops.quality]` = `quality` on LAB_TESTS, and
    the mill's OPC UA source changed by `source` (e.g. the endpoint of a real server)."""
    doc: Table = tomllib.loads(demo_config_text())
    agent = doc["agent"]
    agent["models_dir"] = str(folder / "models")
    agent["model_public_key_file"] = str(MODELS / "demo-signing-key.pub.pem")
    agent["state_dir"] = str(folder / "state")
    doc["sync"]["enabled"] = False
    doc["api"]["enabled"] = False
    mill = [s["name"] for s in doc["sources"] if s["kind"] == "opcua"]
    doc["sources"] = [s for s in doc["sources"] if s["name"] in mill]
    doc["sources"][0].update(source or {})
    doc["tags"] = [t for t in doc["tags"] if t["source"] in mill]
    known = [lp["name"] for lp in doc["loops"]]
    wanted = known if loops is None else list(loops)
    if missing := [name for name in wanted if name not in known]:
        raise KeyError(f"loops {missing} are not in config/demo.toml, found {known}")
    doc["loops"] = [lp for lp in doc["loops"] if lp["name"] in wanted]
    for entry in doc.get("products", []):  # a product's overrides of a loop left out go too
        kept = [over for over in entry.get("loops", []) if over["loop"] in wanted]
        if kept:
            entry["loops"] = kept
        else:
            entry.pop("loops", None)
    for lp in doc["loops"]:
        lp["mode"] = "closed_loop"
        lp["cadence_s"] = cadence_s
        if "quality" in lp:
            raise KeyError(f"loops[name={lp['name']}].quality: already there, expected a new key")
        lp["quality"] = {"tests": list(LAB_TESTS), **(quality or {})}
    names = {t["name"] for t in doc["tags"]}
    address = next(t["address"] for t in doc["tags"] if t["name"] == "LabBlaine")
    folder_address = address.rsplit("/", 1)[0]
    lab: list[Table] = []
    for test in LAB_TESTS:
        spec = TESTS[test]
        stamp = f"{spec.tag}SampleTime"
        if stamp not in names:  # the simulator publishes it; the demo config may not read it
            doc["tags"].append({"name": stamp, "source": mill[0],
                                "address": f"{folder_address}/{stamp}", "unit": "s"})  # fmt: skip
        lab.append({"test": test, "tag": spec.tag, "sample_time_tag": stamp,
                    "window_s": spec.window_s, "unit": spec.unit})  # fmt: skip
    products = doc.get("quality", {}).get("products") or [{"name": product, "s28_per_s2": 2.0}]
    doc["quality"] = {"default_product": product, "tags": lab, "products": products}
    path = folder / "agent.toml"
    path.write_text(dumps(doc), encoding="utf-8")
    return path


def dumps(doc: Table) -> str:
    """TOML text for `doc`: keys in their order, scalars before sub-tables."""
    out: list[str] = []
    _write_table(out, (), doc, header=None)
    return "\n".join(out).lstrip("\n") + "\n"


def _is_array_of_tables(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(e, dict) for e in value)


def _write_table(out: list[str], prefix: tuple[str, ...], table: Table, header: str | None) -> None:
    if header is not None:
        out.extend(["", header])
    for key, value in table.items():
        if not isinstance(value, dict) and not _is_array_of_tables(value):
            out.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        name = ".".join(_key(k) for k in (*prefix, key))
        if isinstance(value, dict):
            _write_table(out, (*prefix, key), value, header=f"[{name}]")
        elif _is_array_of_tables(value):
            for entry in value:
                _write_table(out, (*prefix, key), entry, header=f"[[{name}]]")


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _string(key)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Path):
        return _string(str(value))
    if isinstance(value, list):
        if any(isinstance(v, dict) for v in value):
            raise TypeError(f"no TOML for a list mixing tables and values: {value!r}")
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r} ({type(value).__name__})")
