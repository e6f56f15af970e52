"""The readiness spec: a YAML file naming the candidate, the suites it is measured on and the checks it must pass.

See ``examples/gate.yaml`` for a documented example. The spec's sha256 is recorded with every decision, so a
decision always says which version of the rules it was made under. Paths in the spec are relative to its file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forgepilot.context.types import SNIPPET_SOURCES
from forgepilot.errors import FileError, UserError
from forgepilot.yamlio import line_of, line_of_error, read_versioned_mapping, strip_lines

SCHEMA_VERSION = 1


class SpecError(FileError):
    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        super().__init__(path, line, problem, hint="fix the gate spec (see examples/gate.yaml)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Strict):
    """What is being judged: a model with its context sources and generation parameters (or a deployment alias)."""

    model: str | None = None
    alias: str | None = Field(default=None, description="Judge what this deployment alias points at instead.")
    sources: list[str] = Field(default_factory=lambda: [str(s) for s in SNIPPET_SOURCES])
    temperature: float = 0.0
    max_tokens: int | None = None
    #: The candidate's training dataset folder (``dataset build`` output): memorisation, OOD and lineage.
    dataset: str | None = None


class SuiteRef(_Strict):
    suite: str  # "humaneval" or a suite file
    limit: int | None = Field(default=None, gt=0)
    #: Repositories indexed before a completion suite runs (its related and retrieved context).
    repos: list[str] = Field(default_factory=list)


class _Check(_Strict):
    name: str | None = None
    #: A failing check that only warns (reported, never blocks).
    warn_only: bool = False


class MetricCheck(_Check):
    type: Literal["metric"]
    suite: str
    metric: str
    min: float | None = None
    max: float | None = None
    #: WARN (not FAIL) when the value is past the bound but within this distance of it.
    warn_margin: float = 0.0

    @model_validator(mode="after")
    def _bound(self) -> MetricCheck:
        if self.min is None and self.max is None:
            raise ValueError("a metric check needs min or max")
        return self


class LatencyCheck(_Check):
    type: Literal["latency"]
    suite: str
    mean_max_ms: float | None = None
    p95_max_ms: float | None = None
    #: Fail when more than ``max_share_over`` of requests take longer than ``over_ms``.
    over_ms: float | None = None
    max_share_over: float = 0.05
    cost_per_1000_max_usd: float | None = None


class SlicesCheck(_Check):
    type: Literal["slices"]
    suite: str
    by: str  # a slice label: language, repository, task, ...
    metric: str
    min: float | None = None
    max_gap: float | None = None
    #: Slices with fewer cases are reported but not judged (too few to mean anything).
    min_cases: int = 5


class StabilityCheck(_Check):
    type: Literal["stability"]
    suite: str  # a functional suite with canonical solutions
    perturbations: list[Literal["rename_locals", "reformat", "comments", "reorder_imports"]] = Field(
        default_factory=lambda: ["rename_locals", "reformat", "comments", "reorder_imports"]  # type: ignore[arg-type]
    )
    max_drop: float = 0.05
    metric: str = "pass@1"


class InjectionCheck(_Check):
    type: Literal["injection"]
    #: Share of probes whose planted instruction may be followed (0: none).
    max_followed: float = 0.0


class LeakageCheck(_Check):
    type: Literal["leakage"]
    #: Secrets planted in the training data (in addition to the canaries the probes plant in the context).
    canaries: list[str] = Field(default_factory=list)
    max_leaks: int = 0


class MemorisationCheck(_Check):
    type: Literal["memorisation"]
    dataset: str | None = None  # default: the candidate's dataset
    samples: int = Field(default=30, gt=0)
    #: A continuation that reproduces at least this many characters of the training text verbatim counts.
    min_chars: int = Field(default=40, gt=0)
    max_share: float = 0.1


class ChampionCheck(_Check):
    type: Literal["champion"]
    suite: str
    alias: str = "champion"
    metric: str | None = None  # default: the suite kind's headline per-case figure
    margin: float = 0.02
    confidence: float = 0.95


class OutOfDomainCheck(_Check):
    type: Literal["out_of_domain"]
    suite: str
    dataset: str | None = None
    #: Inputs longer than this many times the longest training instance are flagged.
    length_factor: float = 2.0
    #: FAIL above this share of flagged cases; any flagged case is a WARN.
    max_share: float = 0.2


Check = Annotated[
    MetricCheck
    | LatencyCheck
    | SlicesCheck
    | StabilityCheck
    | InjectionCheck
    | LeakageCheck
    | MemorisationCheck
    | ChampionCheck
    | OutOfDomainCheck,
    Field(discriminator="type"),
]


class Spec(_Strict):
    schema_version: int
    name: str
    description: str = ""
    candidate: Candidate = Field(default_factory=Candidate)
    suites: dict[str, SuiteRef]
    #: At least one: a spec that checks nothing would pass every candidate.
    checks: list[Check] = Field(min_length=1)


class LoadedSpec:
    def __init__(self, spec: Spec, path: Path, sha256: str) -> None:
        self.spec = spec
        self.path = path
        self.sha256 = sha256

    def resolve(self, ref: str) -> str:
        """A path in the spec, relative to the spec's folder (built-in names pass through)."""
        if ref == "humaneval":
            return ref
        p = Path(ref).expanduser()
        return str(p if p.is_absolute() else (self.path.parent / p).resolve())

    def check_names(self) -> list[str]:
        return [check_name(c, i) for i, c in enumerate(self.spec.checks)]


def check_name(check: Any, index: int) -> str:
    if check.name:
        return str(check.name)
    suite = getattr(check, "suite", None)
    return f"{index + 1}. {check.type}" + (f" ({suite})" if suite else "")


def load_spec(path: Path) -> LoadedSpec:
    if not path.is_file():
        raise UserError(f"no gate spec at {path}", hint="see examples/gate.yaml")
    data = path.read_bytes()
    raw = read_versioned_mapping(
        path,
        data,
        error=SpecError,
        shape="a gate spec is a mapping with schema_version, name, suites and checks",
        schema_version=SCHEMA_VERSION,
    )
    try:
        spec = Spec.model_validate(strip_lines(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        raise SpecError(path, line_of_error(raw, loc), f"{'.'.join(str(p) for p in loc)}: {first['msg']}") from None
    known = set(spec.suites)
    for i, check in enumerate(spec.checks):
        suite = getattr(check, "suite", None)
        if suite is not None and suite not in known:
            raise SpecError(
                path, line_of(raw["checks"][i]), f"check {check_name(check, i)!r} names unknown suite {suite!r}"
            )
    return LoadedSpec(spec, path.resolve(), hashlib.sha256(data).hexdigest())
