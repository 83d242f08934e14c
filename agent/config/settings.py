"""The configuration file's schema: one TOML file, plant IT's interface.

Owns: the pydantic models of `[agent]`, `[[sources]]`, `[[tags]]`, `[[loops]]`, `[sync]` and
`[api]`, their defaults and per-field validation (types, ranges, address syntax).
Must not: read files or the environment (agent.config.loader does), or check relations between
sections (agent.config.checks does).
Invariants: unknown keys are errors everywhere (`extra="forbid"`); every duration, size and
rate carries its unit in its name; secrets are never values here, only file references
(`*_file` paths or `*_credential` names resolved under `$CREDENTIALS_DIRECTORY`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.config.addresses import ModbusType
from agent.config.fields import Flag, Name, Port, PositiveSeconds, Section
from agent.config.product_settings import Product, ProductSelection
from agent.config.quality_settings import LoopQuality, QualitySection


class AgentSection(Section):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
    state_dir: Path = Path("/var/lib/edge-agent")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout_s: PositiveSeconds = 10.0
    models_dir: Path | None = None  # default <state_dir>/models
    model_public_key_file: Path | None = None
    audit_retention_days: Annotated[int, Field(ge=1)] = 400


class OpcUaSource(Section):
    kind: Literal["opcua"]
    name: Name
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://[^\s/:]+(:\d{1,5})?(/\S*)?$")]
    security_policy: Literal[
        "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
    ] = "Basic256Sha256"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    username: str | None = None
    password_file: Path | None = None
    password_credential: str | None = None
    application_uri: str | None = None
    acquisition: Literal["subscription", "poll"] = "subscription"
    publishing_interval_s: PositiveSeconds = 1.0
    sampling_interval_s: Annotated[float, Field(ge=0)] = 0.5
    poll_interval_s: PositiveSeconds = 1.0
    queue_size: Annotated[int, Field(ge=1, le=10_000)] = 10
    timeout_s: PositiveSeconds = 5.0
    watchdog_intervals: Annotated[int, Field(ge=2, le=1000)] = 10
    trusted_dir: Path | None = None  # default <state_dir>/pki/trusted
    rejected_dir: Path | None = None  # default <state_dir>/pki/rejected

    @model_validator(mode="after")
    def _security_pairs(self) -> OpcUaSource:
        none_policy = self.security_policy == "None"
        none_mode = self.security_mode == "None"
        if none_policy != none_mode:
            raise ValueError(
                "security_policy and security_mode both 'None' (explicitly insecure) or both "
                f"secure; found security_policy '{self.security_policy}' with security_mode "
                f"'{self.security_mode}'"
            )
        return self


class ModbusSource(Section):
    kind: Literal["modbus"]
    name: Name
    transport: Literal["tcp", "rtu", "rtu_over_tcp"] = "tcp"
    host: str | None = None
    port: Port = 502
    serial_port: str | None = None
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    poll_interval_s: PositiveSeconds = 1.0
    timeout_s: PositiveSeconds = 1.0
    """Per request: how long to wait for an answer (also for connecting)."""
    retries: Annotated[int, Field(ge=0, le=5)] = 1
    """Consecutive scans a unit may leave unanswered before its tags go Bad_NoCommunication
    (those scans leave a gap). A request is never re-sent within a scan, so a dead unit costs
    the other units at most one timeout_s a scan."""
    max_gap_registers: Annotated[int, Field(ge=0, le=124)] = 8
    max_gap_bits: Annotated[int, Field(ge=0, le=1999)] = 64
    write_multiple: Flag = False
    """Write with FC15/FC16 even for one coil/register (devices without FC5/FC6)."""

    @model_validator(mode="after")
    def _transport_needs(self) -> ModbusSource:
        if self.transport == "rtu" and not self.serial_port:
            raise ValueError("serial_port (e.g. '/dev/ttyUSB0') for transport 'rtu'; found none")
        if self.transport != "rtu" and not self.host:
            raise ValueError(f"host for transport '{self.transport}'; found none")
        return self


Source = Annotated[OpcUaSource | ModbusSource, Field(discriminator="kind")]

WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]


class Tag(Section):
    name: Name
    source: str
    address: str
    type: ModbusType | None = None
    unit_id: Annotated[int, Field(ge=0, le=255)] = 1
    byte_order: WordOrder = "ABCD"
    length: Annotated[int, Field(ge=1, le=246)] | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    sampling_interval_s: Annotated[float, Field(ge=0)] | None = None
    deadband: Annotated[float, Field(ge=0)] = 0.0
    deadband_kind: Literal["absolute", "percent"] = "absolute"
    resolution: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Store values rounded to this step (lossy by configuration, like a historian's
    compression deviation; None: lossless). Keep it well below the sensor's noise."""
    writable: Flag = False
    write_min: float | None = None
    write_max: float | None = None

    @field_validator("scale")
    @classmethod
    def _nonzero_scale(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale must not be 0 (a write could not be converted back)")
        return value


class LoopInput(Section):
    feature: Name
    tag: str
    max_age_s: PositiveSeconds = 5.0
    critical: Flag = True
    uncertain_max_age_s: Annotated[float, Field(ge=0)] = 0.0
    frozen_after_samples: Annotated[int, Field(ge=0)] = 0
    window_s: PositiveSeconds | None = None


class GridAxis(Section):
    """One axis of the candidate grid: the feature's current value +- span in steps."""

    feature: Name
    setpoint_tag: str | None = None
    span: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    step: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    move_penalty: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _few_points(self) -> GridAxis:
        if self.span / self.step > 500:
            raise ValueError(
                f"at most 500 steps each side; found span {self.span:g} / step {self.step:g}"
            )
        return self


class CementMillObjective(Section):
    """`[loops.objective]` with kind "cement_mill": the cement mill's quality and CO2 objective
    (plant-model 2.3; agent.objectives.cement_mill). Its schema lives here, with the rest of
    the file's schema, because the configuration layer sits below the objectives: the file is
    validated (and a bad key reported with its line) before any objective is built."""

    kind: Literal["cement_mill"] = "cement_mill"
    s28_target_mpa: float = 47.5
    risk_z: Annotated[float, Field(ge=0)] = 1.0
    blaine_min_cm2g: float = 3500.0
    blaine_max_cm2g: float = 4400.0
    residue45_max_pct: float = 8.0
    mill_power_limit_kw: Annotated[float, Field(gt=0)] = 3800.0
    capacity_margin: Annotated[float, Field(ge=1.0)] = 1.03
    clinker_co2_kg_per_t: Annotated[float, Field(ge=0)] = 830.0
    electricity_co2_kg_per_kwh: Annotated[float, Field(ge=0)] = 0.4


DEFAULT_OBJECTIVE_KIND = "cement_mill"


def _objective_kind(value: object) -> object:
    """A `[loops.objective]` table without `kind` is the cement mill's (every file written
    before objectives were plug-ins)."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": DEFAULT_OBJECTIVE_KIND, **value}
    return value


ObjectiveSettings = Annotated[
    CementMillObjective,  # a new objective: `CementMillObjective | ItsSettings`
    Field(discriminator="kind"),
    BeforeValidator(_objective_kind),
]
"""The settings of a loop's objective, one class per `kind` (agent.objectives.registry maps
each kind to its objective). An unknown kind is refused when the file is loaded."""


class Loop(Section):
    name: Name
    mode: Literal["off", "shadow", "advisory", "closed_loop"] = "off"
    model: str
    model_version: str | None = None
    strategy: Literal["grid", "direct"] = "grid"
    lever: Name | None = None
    output: Name | None = None
    target_tag: str
    readback_tag: str | None = None
    enable_tag: str | None = None
    enable_max_age_s: PositiveSeconds | None = None
    heartbeat_tag: str | None = None
    heartbeat_echo_tag: str | None = None
    heartbeat_max_age_s: PositiveSeconds = 5.0
    heartbeat_echo_lag_max: Annotated[int, Field(ge=1, le=1000)] = 5
    advice_value_tag: str | None = None
    advice_id_tag: str | None = None
    advice_effect_tag: str | None = None
    ack_tag: str | None = None
    advice_expiry_s: PositiveSeconds = 900.0
    cadence_s: PositiveSeconds = 60.0
    feature_window_s: PositiveSeconds = 60.0
    estimator_window_s: PositiveSeconds = 1800.0
    grid: list[GridAxis] = []
    objective: ObjectiveSettings = CementMillObjective()
    envelope_min: float
    envelope_max: float
    max_step: Annotated[float, Field(gt=0)]
    max_rate_per_h: Annotated[float, Field(gt=0)] | None = None
    min_interval_s: Annotated[float, Field(ge=0)] = 600.0
    deadband: Annotated[float, Field(ge=0)] = 0.0
    max_deviation_from_baseline: Annotated[float, Field(gt=0)] | None = None
    readback_timeout_s: PositiveSeconds = 30.0
    readback_tolerance: Annotated[float, Field(ge=0)] = 0.5
    inputs: list[LoopInput] = []
    baseline_expiry_s: PositiveSeconds | None = None
    baseline_confirm_tag: str | None = None
    quality: LoopQuality = LoopQuality()

    @model_validator(mode="after")
    def _envelope_order(self) -> Loop:
        if self.envelope_min >= self.envelope_max:
            raise ValueError(
                "envelope_min below envelope_max; found "
                f"envelope_min {self.envelope_min:g} and envelope_max {self.envelope_max:g}"
            )
        if self.strategy == "grid" and (self.lever is None or not self.grid):
            raise ValueError(
                "lever and at least one [[loops.grid]] axis for strategy 'grid'; found "
                f"lever {self.lever!r} and {len(self.grid)} axes"
            )
        if self.strategy == "grid" and self.lever not in {axis.feature for axis in self.grid}:
            raise ValueError(f"a [[loops.grid]] axis for the lever; found none for {self.lever!r}")
        if self.strategy == "direct" and self.output is None:
            raise ValueError("output (the model output to follow) for strategy 'direct'")
        return self


class SyncSection(Section):
    enabled: Flag = True
    url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    token_file: Path | None = None
    token_credential: str | None = None
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    flush_interval_s: PositiveSeconds = 1.0
    max_buffer_bytes: Annotated[int, Field(ge=1_000_000)] = 2_000_000_000
    max_block_samples: Annotated[int, Field(ge=1, le=1_000_000)] = 100_000
    bandwidth_limit_bytes_per_s: Annotated[int, Field(ge=0)] = 0
    timeout_s: PositiveSeconds = 30.0
    remote_support: Flag = True
    """Status reports, allowlisted diagnostics and signed model delivery through the sync."""
    status_interval_s: Annotated[float, Field(ge=5)] = 60.0


class ApiSection(Section):
    enabled: Flag = True
    host: str = "127.0.0.1"
    port: Port = 8787


class Settings(BaseSettings):
    """The whole file; `EDGE_AGENT__SECTION__KEY` environment variables override it."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix="EDGE_AGENT__",
        env_nested_delimiter="__",
        case_sensitive=False,
    )

    agent: AgentSection
    sources: list[Source] = []
    tags: list[Tag] = []
    loops: list[Loop] = []
    sync: SyncSection = SyncSection(enabled=False)
    api: ApiSection = ApiSection()
    quality: QualitySection = QualitySection()
    product_selection: ProductSelection | None = None
    products: list[Product] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment overrides the file (passed as init values); nothing else is read."""
        return (env_settings, init_settings)


SECRET_FIELDS: dict[str, tuple[str, str]] = {
    # inline key that is refused -> (file key, credential key)
    "password": ("password_file", "password_credential"),
    "token": ("token_file", "token_credential"),
}
