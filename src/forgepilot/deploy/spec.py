"""Rollout specs: how a canary earns its traffic (YAML, versioned by sha256 like gate specs; see
``examples/rollout.yaml``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from forgepilot.errors import FileError, UserError
from forgepilot.yamlio import line_of_error, read_versioned_mapping, strip_lines

SCHEMA_VERSION = 1
#: Guard metrics, each a share of events: (what counts as a hit, whether lower is better).
GuardMetric = Literal["error_rate", "slow_rate", "acceptance_rate", "retention_rate"]
LOWER_IS_BETTER: dict[str, bool] = {
    "error_rate": True,
    "slow_rate": True,
    "acceptance_rate": False,
    "retention_rate": False,
}


class RolloutSpecError(FileError):
    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        super().__init__(path, line, problem, hint="fix the rollout spec (see examples/rollout.yaml)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Guard(_Strict):
    """A metric the canary must not be worse at than the champion by more than ``margin`` (absolute, as a share:
    0.01 is one percentage point)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: GuardMetric
    margin: float = Field(ge=0.0, le=1.0)
    #: ``slow_rate``: a completion slower than this is slow.
    latency_ms: float | None = Field(default=None, gt=0)


class RolloutSpec(_Strict):
    schema_version: int
    name: str
    description: str = ""
    #: The canary's share of users at each step, rising, the last one 1.0 (then the canary is promoted).
    steps: list[float] = Field(min_length=1)
    #: Requests each side must serve in a step before its guards are judged.
    min_events: int = Field(default=200, ge=1)
    #: Past this many canary requests in a step without a verdict, the canary is rolled back (not shown safe).
    max_events: int = Field(default=5000, ge=1)
    guards: list[Guard] = Field(min_length=1)
    #: Error probability of the whole rollout's tests (spent across the looks: see ``deploy.sequential``).
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)

    @field_validator("steps")
    @classmethod
    def _rising_to_all(cls, steps: list[float]) -> list[float]:
        if any(not 0.0 < s <= 1.0 for s in steps):
            raise ValueError("every step is a share of users in (0, 1]")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError("steps must rise")
        if steps[-1] != 1.0:
            raise ValueError("the last step must be 1.0 (all users): the canary is promoted after it")
        return steps

    @field_validator("guards")
    @classmethod
    def _slow_needs_a_bound(cls, guards: list[Guard]) -> list[Guard]:
        for g in guards:
            if g.metric == "slow_rate" and g.latency_ms is None:
                raise ValueError("a slow_rate guard needs latency_ms")
        return guards


@dataclass(frozen=True)
class LoadedRolloutSpec:
    spec: RolloutSpec
    path: Path
    sha256: str


def load_rollout_spec(path: Path) -> LoadedRolloutSpec:
    """Read and validate ``path``; every problem names the file and line."""
    if not path.is_file():
        raise UserError(f"no rollout spec at {path}", hint="see examples/rollout.yaml")
    data = path.read_bytes()
    raw = read_versioned_mapping(
        path,
        data,
        error=RolloutSpecError,
        shape="a rollout spec is a mapping with schema_version, name, steps and guards",
        schema_version=SCHEMA_VERSION,
    )
    try:
        spec = RolloutSpec.model_validate(strip_lines(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = f"{where}: {first['msg']}".lstrip(": ")
        raise RolloutSpecError(path, line_of_error(raw, first["loc"]), problem) from None
    return LoadedRolloutSpec(spec, path.resolve(), hashlib.sha256(data).hexdigest())
