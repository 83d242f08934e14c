"""config/example-plant.toml documents every key the schema knows, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from agent.config.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example-plant.toml"


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        nested = _models(info.annotation)
        if nested:
            for sub in nested:
                keys |= _keys(sub, f"{prefix}{name}.")
        else:
            keys.add(name)
    return keys


def test_every_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    written = set(re.findall(r"^#?\s*([a-z_0-9]+)\s*=", text, flags=re.MULTILINE))
    schema = _keys(Settings)
    assert schema - written == set(), "keys missing from config/example-plant.toml"
    assert written - schema == set(), "keys in the example that the schema does not know"
