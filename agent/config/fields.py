"""The field types every table of the configuration file shares.

Owns: `Section` (unknown keys are errors, values frozen), `Flag` (true/false only, also from an
environment variable's text), `Name`, `PositiveSeconds`, `Port`.
Must not: know any table (agent.config.settings and agent.config.quality_settings do).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

__all__ = ["Flag", "Name", "Port", "PositiveSeconds", "Section"]


def _flag(value: object) -> object:
    """true/false only: TOML booleans, or 'true'/'false' text from an environment variable."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise PydanticCustomError("bool_type", "expected true or false")


Flag = Annotated[bool, BeforeValidator(_flag)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")]
PositiveSeconds = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Section(BaseModel):
    """Base of every table in the file: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
