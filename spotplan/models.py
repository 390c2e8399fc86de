"""The data types of spotplan's contracts (DESIGN.md §4): workloads, the analysis result and the plan.

This is the only module that validates formats; everything else takes these types (or plain data
derived from them) as given.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

Kind = Literal["training", "batch", "dev", "test", "inference", "realtime"]
Provider = Literal["aws", "gcp", "azure"]
Market = Literal["on-demand", "spot"]
Status = Literal["recommended", "conditional", "not-worth-it", "ineligible", "already-spot"]
#: The statuses that make a move: counted in totals.savings, planned by --plan-out, replayed by calibration.
CANDIDATE_STATUSES = frozenset({"recommended", "conditional"})

DURABLE_SCHEMES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "abfss://", "adl://")

ANALYSIS_SCHEMA = "spotplan.analysis/1"
PLAN_SCHEMA = "spotplan.plan/1"


class _Strict(BaseModel):
    # Infinite or NaN hours/seconds would poison every sum of the cost model; a YAML `id: 42`
    # or `region: 1` is meant as text.
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, allow_inf_nan=False, coerce_numbers_to_str=True
    )


def _no_bool_number(v: Any) -> Any:
    # pydantic's lax mode reads `true` as 1.0; for a count or a duration that is always a typo.
    if isinstance(v, bool):
        raise PydanticCustomError("number_type", "Input should be a number, not a boolean")
    return v


class Checkpoint(_Strict):
    enabled: bool = False
    interval_minutes: float | None = Field(default=None, gt=0)
    save_seconds: float | None = Field(default=None, ge=0)
    restore_seconds: float | None = Field(default=None, ge=0)
    storage: str | None = None
    durable: bool | None = None
    size_gb: float | None = Field(default=None, ge=0)

    _numbers = field_validator(
        "interval_minutes", "save_seconds", "restore_seconds", "size_gb", mode="before"
    )(_no_bool_number)

    @model_validator(mode="after")
    def _required_when_enabled(self) -> Checkpoint:
        if self.enabled:
            missing = [
                name
                for name in ("interval_minutes", "save_seconds", "restore_seconds")
                if getattr(self, name) is None
            ]
            if missing:
                # A custom error type so readers can name the missing field itself
                # (ctx["field"]) rather than the whole checkpoint block.
                raise PydanticCustomError(
                    "missing_when_enabled",
                    "checkpoint.{field} is required when checkpoint.enabled is true",
                    {"field": missing[0]},
                )
        return self

    @property
    def is_durable(self) -> bool:
        """Durable storage: an object-store URI, or a path the user declared durable."""
        if self.durable is not None:
            return bool(self.durable)
        return bool(self.storage) and str(self.storage).lower().startswith(DURABLE_SCHEMES)


class CheckpointTrigger(BaseModel):
    model_config = ConfigDict(extra="allow")
    via: Literal["ssm", "ssh", "docker", "signal", "command"] = "command"
    command: str | None = None


class Network(BaseModel):
    model_config = ConfigDict(extra="allow")
    subnet: str | None = None
    security_groups: list[str] = Field(default_factory=list)


class Launch(BaseModel):
    model_config = ConfigDict(extra="allow")
    image: str | None = None
    resume_command: str | None = None
    checkpoint_trigger: CheckpointTrigger | None = None
    network: Network | None = None
    readiness_command: str | None = None


class Workload(_Strict):
    id: str = Field(min_length=1)
    kind: Kind
    provider: Provider
    region: str = Field(min_length=1)
    zone: str | None = None
    instance_type: str = Field(min_length=1)
    gpu_model: str | None = None
    gpu_count: float | None = Field(default=None, gt=0)
    # The upper bounds are far past any real fleet (100,000 instances, 11 years of work); beyond them
    # the costs overflow floats and the P90 search gives up, so a typo is named instead.
    count: int = Field(default=1, ge=1, le=100_000)
    market: Market = "on-demand"
    remaining_hours: float = Field(ge=0, le=100_000)
    deadline: datetime | None = None
    gang: bool | None = None
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    handles_preemption: bool = False
    provision_minutes: float | None = Field(default=None, ge=0)
    instance_ids: list[str] = Field(default_factory=list)
    launch: Launch | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    _numbers = field_validator(
        "gpu_count", "count", "remaining_hours", "provision_minutes", mode="before"
    )(_no_bool_number)

    @field_validator("region", "zone")
    @classmethod
    def _place_lowercase(cls, v: str | None) -> str | None:
        # Every cloud names its regions and zones in lowercase (us-east-1, europe-west4-a, eastus);
        # the price table is read the same way, so `US-East-1` still finds its prices.
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_str(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): "" if val is None else str(val) for k, val in v.items()}
        return v

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline_iso8601(cls, v: Any) -> Any:
        # pydantic would read 1700000000 as a Unix time; §4.1 promises ISO-8601 only.
        if v is None or isinstance(v, datetime):
            return v
        if isinstance(v, date):
            return datetime(v.year, v.month, v.day)
        if isinstance(v, str) and v.strip() and not v.strip().lstrip("+-").replace(".", "", 1).isdigit():
            return v.strip()
        raise PydanticCustomError(
            "iso8601", "Input should be an ISO-8601 date or time such as 2026-12-01T00:00:00Z"
        )

    @field_validator("deadline")
    @classmethod
    def _deadline_utc(cls, v: datetime | None) -> datetime | None:
        # A deadline without an offset means UTC, so it compares with aware `--now` values.
        if v is not None and v.tzinfo is None:
            return v.replace(tzinfo=timezone.utc)
        return v

    @property
    def is_gang(self) -> bool:
        return self.gang if self.gang is not None else self.kind == "training"



# ---- analysis result (schema spotplan.analysis/1) -------------------------------------------


class Reason(BaseModel):
    code: str
    message: str


class CurrentCost(BaseModel):
    provider: str
    region: str
    instance_type: str
    market: str
    count: int
    price_per_hour: float | None
    hours: float
    cost: float | None


class OfferResult(BaseModel):
    provider: str
    region: str
    zone: str | None
    instance_type: str
    price_per_hour: float
    interruption_band: str | None
    mtbf_hours: float
    expected_interruptions: float
    lost_hours_per_interruption: float
    restart_hours: float
    wall_hours: float
    wall_hours_p90: float
    cost: float
    cost_p90: float
    migration_cost: float
    savings: float
    savings_pct: float
    recommended_checkpoint_minutes: float | None
    #: Extension of §4.3 (issue 3): the 95th percentile of the pool's prices over the window.
    price_per_hour_p95: float | None = None


class WorkloadResult(BaseModel):
    id: str
    status: Status
    reasons: list[Reason] = Field(default_factory=list)
    warnings: list[Reason] = Field(default_factory=list)
    current: CurrentCost
    best: OfferResult | None = None
    alternatives: list[OfferResult] = Field(default_factory=list)


class Totals(BaseModel):
    workloads: int
    recommended: int
    conditional: int
    current_cost: float
    projected_cost: float
    savings: float


class PricesInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    source: str
    as_of: str | None
    # Extensions after the §4.3 fields: each provider's newest observation, and staleness warnings.
    as_of_by_provider: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class AnalysisResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    schema_: str = Field(default=ANALYSIS_SCHEMA, alias="schema")
    generated_at: str
    prices: PricesInfo
    assumptions: dict[str, Any]
    workloads: list[WorkloadResult]
    totals: Totals

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# ---- plan (schema spotplan.plan/1) ----------------------------------------------------------


class _PlanPart(BaseModel):
    # A plan moves production workloads: a misspelled key (`fallbak`) or a `true` where a price
    # belongs is an error, not something to read past.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MoveSource(_PlanPart):
    provider: Provider
    region: str
    zone: str | None = None
    instance_type: str
    instance_ids: list[str] = Field(default_factory=list)


class MoveTarget(_PlanPart):
    provider: Provider
    region: str
    zone: str | None = None
    instance_type: str
    market: Literal["spot"] = "spot"
    max_price: float = Field(gt=0, strict=True)


class MoveExpected(BaseModel):
    # Informational (what analyze expected); extra figures here change nothing migrate does.
    model_config = ConfigDict(extra="allow")
    savings: float
    cost: float


class Move(_PlanPart):
    id: str = Field(min_length=1)
    workload: str
    source: MoveSource
    target: MoveTarget
    checkpoint: Checkpoint
    launch: Launch | None = None
    fallback: Literal["on-demand", "none"] = "on-demand"
    expected: MoveExpected
    # Not in the §4.4 core set but carried so migrate can check max_price <= on-demand and count,
    # and tag what it creates with the workload's labels; `status` is the analysis status.
    count: int = Field(default=1, ge=1, strict=True)
    on_demand_price: float | None = Field(default=None, gt=0, strict=True)
    labels: dict[str, str] = Field(default_factory=dict)
    status: str | None = None


class PlanAnalysisRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    generated_at: str


class Plan(BaseModel):
    model_config = ConfigDict(extra="allow")
    schema_: str = Field(alias="schema")
    created_at: str
    analysis: PlanAnalysisRef
    moves: list[Move]

    @field_validator("schema_")
    @classmethod
    def _known_schema(cls, v: str) -> str:
        if v != PLAN_SCHEMA:
            raise ValueError(f"expected schema {PLAN_SCHEMA!r}")
        return v

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)
