"""Cross-checks of the `[[loops]]` entries against the tags and the `[agent]` section.

Owns: every rule that relates a loop to other sections: its tags exist, the target and the
heartbeat and advisory tags are writable, the heartbeat tag and its echo tags can count
(agent.config.heartbeat_counter; `shared_counter` is the one computation of a heartbeat's
range, for `check` and for agent.control.setup alike), the enable and echo tags
can carry a flag and a counter, the envelope lies inside the target's write limits, the
modes have the tags they need (advisory and closed loop: handshake tags; advisory: the
operator-screen tags; closed loop: a model signing key), grid axes name the loop's own
inputs, and feature names are unique per loop.
The loops against the model packages they name: agent.control.model_fit.
Must not: touch the filesystem, the environment or the network.
Invariants: pure and total, like agent.config.checks; every problem is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent.config.addresses import ModbusType
from agent.config.checks import first_by_name, unique_names
from agent.config.heartbeat_counter import CounterRange, Refusal, heartbeat_range, value_kind
from agent.config.settings import Loop, Tag
from agent.domain.errors import ConfigProblem

__all__ = ["check_loops", "shared_counter"]


def check_loops(
    loops: Sequence[tuple[int, Loop]],
    tags: Sequence[Tag],
    file: str,
    tag_names: Sequence[str] = (),
    *,
    public_key: bool = True,
) -> list[ConfigProblem]:
    """Loops refer to existing tags, write only writable ones, stay inside the write limits.

    `tag_names` names every tag in the file, also those that failed validation;
    `public_key` says whether [agent] model_public_key_file is set (closed loop needs it).
    """
    problems = unique_names(((i, lp.name) for i, lp in loops), "loops", file)
    by_name = first_by_name(tags)
    invalid = set(tag_names) - set(by_name)
    for index, loop in loops:
        key = f"loops[{index}]"

        def missing(
            field: str,
            name: str | None,
            *,
            need: bool = False,
            k: str = key,
            mode: str = loop.mode,
        ) -> bool:
            if name is None:
                if need:
                    problems.append(
                        ConfigProblem(
                            file,
                            f"{k}.{field}",
                            f"a tag name: mode '{mode}' needs {field}",
                            "nothing",
                        )
                    )
                return True
            if name in invalid:
                return True
            if name not in by_name:
                problems.append(
                    ConfigProblem(file, f"{k}.{field}", "the name of a [[tags]] entry", repr(name))
                )
                return True
            return False

        closed = loop.mode == "closed_loop"
        writes = loop.mode in ("advisory", "closed_loop")
        if closed and not public_key:
            problems.append(
                ConfigProblem(
                    file,
                    f"{key}.mode",
                    "[agent] model_public_key_file set: closed_loop runs only signed models",
                    "no public key",
                )
            )
        if not missing("target_tag", loop.target_tag):
            target = by_name[loop.target_tag]
            if not target.writable:
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.target_tag",
                        "a tag with writable = true",
                        f"'{target.name}', which is not writable",
                    )
                )
            elif (
                target.write_min is not None
                and target.write_max is not None
                and (target.write_min < target.write_max)
                and not (
                    target.write_min <= loop.envelope_min and loop.envelope_max <= target.write_max
                )
            ):
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.envelope_min",
                        f"an envelope inside the tag's write limits "
                        f"[{target.write_min:g}, {target.write_max:g}]",
                        f"[{loop.envelope_min:g}, {loop.envelope_max:g}]",
                    )
                )
        for field in ("readback_tag", "enable_tag", "heartbeat_echo_tag"):
            missing(field, getattr(loop, field), need=writes)
        missing("ack_tag", loop.ack_tag, need=loop.mode == "advisory")
        for field in ("heartbeat_tag", "advice_value_tag", "advice_id_tag", "advice_effect_tag"):
            need = (field == "heartbeat_tag" and writes) or (
                loop.mode == "advisory" and field != "advice_effect_tag"
            )
            name = getattr(loop, field)
            if not missing(field, name, need=need) and not by_name[name].writable:
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.{field}",
                        "a tag with writable = true",
                        f"'{name}', which is not writable",
                    )
                )
        if writes:
            problems.extend(_handshake_tags(key, loop, [lp for _, lp in loops], by_name, file))
        features = {item.feature for item in loop.inputs}
        for j, axis in enumerate(loop.grid):
            missing("setpoint_tag", axis.setpoint_tag, k=f"{key}.grid[{j}]")
            if axis.feature not in features:
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.grid[{j}].feature",
                        "a feature of this loop's [[loops.inputs]]",
                        repr(axis.feature),
                    )
                )
        if loop.mode != "off" and not loop.inputs:
            problems.append(
                ConfigProblem(file, f"{key}.inputs", "at least one [[loops.inputs]]", "none")
            )
        seen: set[str] = set()
        for j, item in enumerate(loop.inputs):
            missing("tag", item.tag, k=f"{key}.inputs[{j}]")
            if item.feature in seen:
                problems.append(
                    ConfigProblem(
                        file,
                        f"{key}.inputs[{j}].feature",
                        "a feature name used once per loop",
                        f"'{item.feature}' again",
                    )
                )
            seen.add(item.feature)
    return problems


def shared_counter(
    loops: Sequence[Loop], heartbeat: str, by_name: Mapping[str, Tag]
) -> CounterRange | Refusal:
    """The counter range of the heartbeat tag `heartbeat` (in `by_name`): one heartbeat per
    tag, shared by every advisory or closed-loop loop that writes it, so it must fit the
    tag, every such loop's echo tag and the largest of their echo lags."""
    sharing = [lp for lp in loops if lp.mode in _WRITES and lp.heartbeat_tag == heartbeat]
    names = [lp.heartbeat_echo_tag for lp in sharing]
    echoes = [by_name[name] for name in names if name is not None and name in by_name]
    lag_max = max((lp.heartbeat_echo_lag_max for lp in sharing), default=0)
    return heartbeat_range(by_name[heartbeat], echoes, lag_max=lag_max)


_WRITES = ("advisory", "closed_loop")


def _handshake_tags(
    key: str, loop: Loop, loops: Sequence[Loop], by_name: Mapping[str, Tag], file: str
) -> list[ConfigProblem]:
    """The heartbeat and its echo can count; the enable tag holds a flag, the echo a counter."""
    problems = []
    heartbeat = by_name.get(loop.heartbeat_tag or "")
    if heartbeat is not None and heartbeat.writable:
        found = shared_counter(loops, heartbeat.name, by_name)
        if isinstance(found, Refusal):
            problems.append(ConfigProblem(file, f"{key}.{found.key}", found.expected, found.found))
    for field, refused, expected in (
        ("enable_tag", (ModbusType.STRING,), "a tag that reads true/false or 0/1 (not a string)"),
        ("heartbeat_echo_tag", (ModbusType.STRING, ModbusType.BOOL),
         "a tag that reads back a counter (a whole-number or float type)"),
    ):  # fmt: skip
        tag = by_name.get(getattr(loop, field) or "")
        kind = value_kind(tag) if tag is not None else None
        if tag is not None and kind in refused:
            problems.append(
                ConfigProblem(file, f"{key}.{field}", expected, f"'{tag.name}', a {kind} tag")
            )
    return problems
