"""The schema of the truth loop: `[quality]` (where lab results come from) and `[loops.quality]`
(how a loop's model is judged against them and corrected).

Owns: the pydantic models of `[quality]`, `[[quality.tags]]`, `[quality.csv]`,
`[[quality.products]]` and `[loops.quality]`, their defaults and per-field validation (plant-model
4.2-4.4; docs/operations.md "Connecting the LIMS").
Must not: read files (agent.config.loader does), or check relations between sections (tags that
exist, tests the model predicts: agent.config.checks_quality does).
Invariants: unknown keys are errors; durations carry their unit in their name; a time zone is an
IANA name that the standard library knows (checked here, so a typo is exit 78 at `check`).
"""

from __future__ import annotations

import codecs
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from agent.config.fields import Flag, PositiveSeconds, Section

__all__ = [
    "LabCsv",
    "LabTag",
    "LoopQuality",
    "ProductQuality",
    "QualitySection",
]


Test = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,31}$")]


class LabTag(Section):
    """A lab result the LIMS writes into PLC/SCADA tags: the value, and optionally the tags that
    say which sample it is (without `sample_time_tag` the value's source time is the sample time:
    the end of the production window it describes)."""

    test: Test
    tag: str
    sample_time_tag: str | None = None
    sample_id_tag: str | None = None
    window_s: PositiveSeconds = 3600.0
    unit: str = ""
    product: str | None = None  # default: [quality] default_product


class LabCsv(Section):
    """CSV exports of the LIMS dropped into a folder (one result per row)."""

    folder: Path
    pattern: str = "*.csv"
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ";"
    decimal: Literal[".", ","] = ","
    time_format: str = "%d.%m.%Y %H:%M"
    timezone: str = "UTC"
    ambiguous: Literal["earlier", "later", "reject"] = "reject"
    encoding: str = "utf-8-sig"
    poll_interval_s: PositiveSeconds = 30.0
    default_window_s: PositiveSeconds = 3600.0

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"a text encoding Python knows, such as 'utf-8-sig' or 'cp1252'; found {value!r}"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"an IANA time zone name such as 'Europe/Berlin' or 'UTC'; found {value!r}"
            ) from None
        return value


class ProductQuality(Section):
    """What the truth loop knows of a product: the early -> late strength relation
    (s28 = a + b x s2, plant-model 4.2) used to map early-strength residuals onto 28 days."""

    name: str
    s28_per_s2: Annotated[float, Field(gt=0, le=10)] = 2.0


class QualitySection(Section):
    """`[quality]`: where lab results come from, and how long predictions are kept for them."""

    default_product: str = "default"
    tags: list[LabTag] = []
    csv: LabCsv | None = None
    cloud: Flag = False  # pull results the cloud forwards (needs [sync] url)
    cloud_poll_interval_s: PositiveSeconds = 300.0
    prediction_retention_days: Annotated[float, Field(ge=29, le=400)] = 35.0
    max_predictions: Annotated[int, Field(ge=10_000)] = 2_000_000
    result_retention_days: Annotated[float, Field(ge=29)] = 400.0
    products: list[ProductQuality] = []


class LoopQuality(Section):
    """`[loops.quality]`: a loop's model judged against the lab (plant-model 4.4)."""

    product: str | None = None  # default: [quality] default_product
    tests: list[Test] = ["blaine", "residue45", "s2", "s28"]
    results: Annotated[int, Field(ge=2, le=1000)] = 20  # bias (mean) and RMSE over the last N
    min_results: Annotated[int, Field(ge=1, le=1000)] = 5  # no bias verdict on fewer
    bias_sigmas: Annotated[float, Field(gt=0)] = 1.0  # and beyond 3 standard errors of the mean
    rmse_min_results: Annotated[int, Field(ge=2, le=1000)] = 20  # no RMSE verdict on fewer
    rmse_ratio: Annotated[float, Field(gt=1)] = 1.5
    persist_results: Annotated[int, Field(ge=1, le=1000)] = 2  # degraded this many in a row
    step_down_tests: list[Test] = ["s2", "s28"]  # the tests whose verdict steps a loop down
    step_down: Flag = True
    correction: Flag = True
    correction_results: Annotated[int, Field(ge=2, le=1000)] = 20  # offsets: mean of the last N
    correction_min_sigmas: Annotated[float, Field(ge=0, le=5)] = 0.75  # smaller bias: no offset
    max_correction_mpa: Annotated[float, Field(ge=0, le=10)] = 3.0
    challenger_version: str | None = None
