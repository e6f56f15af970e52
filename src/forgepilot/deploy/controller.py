"""The rollout controller: judges the running rollout's step and moves it (next step, promote, roll back).

Each ``tick`` reads, for the canary and the champion since the step began, the counts every guard needs (from the
monitor's store), and at each planned look (see ``deploy.sequential``) judges every guard. Any harm rolls the
canary back at once; every guard shown non-inferior moves to the next share, and past the last one promotes the
canary to champion. Too many canary requests without a verdict also roll back: a canary must show it is safe.
Every decision is stored in the registry with its evidence and written to the audit log.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from forgepilot.deploy.sequential import LOOKS, GuardResult, Rates, judge, look_boundary
from forgepilot.deploy.spec import LOWER_IS_BETTER, Guard, LoadedRolloutSpec, RolloutSpec
from forgepilot.errors import UserError
from forgepilot.monitor import AuditLog, DeploymentCounts, MonitorStore
from forgepilot.registry import Registry, Rollout

_log = logging.getLogger("forgepilot.deploy")
CHAMPION, CANARY = "champion", "canary"


@dataclass(frozen=True)
class StepVerdict:
    action: str  # waiting | next_step | promoted | rolled_back
    reason: str
    look: int | None = None
    guards: list[GuardResult] = field(default_factory=list)

    def evidence(self) -> dict[str, Any]:
        return {"look": self.look, "guards": [g.record() for g in self.guards]}


def guard_rates(guard: Guard, counts: DeploymentCounts) -> Rates:
    """The rate a guard compares, out of the events it is a share of."""
    if guard.metric == "error_rate":
        return Rates(counts.errors, counts.requests)
    if guard.metric == "slow_rate":
        return Rates(counts.slow, counts.requests)
    if guard.metric == "acceptance_rate":
        return Rates(counts.accepted, counts.shown)
    return Rates(counts.retained, counts.retention_checked)


def judge_step(
    spec: RolloutSpec, champion: dict[Guard, DeploymentCounts], canary: dict[Guard, DeploymentCounts], last_look: int
) -> StepVerdict:
    """The verdict on one step's numbers, at the newest planned look not yet taken (``last_look`` was)."""
    requests = min(c.requests for c in canary.values())
    champion_requests = min(c.requests for c in champion.values())
    if min(requests, champion_requests) < spec.min_events:
        return StepVerdict("waiting", f"{requests} canary / {champion_requests} champion requests of {spec.min_events}")
    look = min(LOOKS, max(1, math.floor(LOOKS * requests / spec.max_events)))
    if look <= last_look and requests < spec.max_events:
        wait = f"look {last_look} taken; the next at {(last_look + 1) / LOOKS:.0%} of max_events"
        return StepVerdict("waiting", wait)
    # The error rate is split over the guards and the two questions each asks (harm, non-inferiority).
    boundary = look_boundary(spec.alpha / (2 * len(spec.guards)), look)
    results = [
        judge(
            g.metric,
            guard_rates(g, champion[g]),
            guard_rates(g, canary[g]),
            margin=g.margin,
            lower_is_better=LOWER_IS_BETTER[g.metric],
            boundary=boundary,
        )
        for g in spec.guards
    ]
    harmed = [r for r in results if r.verdict == "harm"]
    if harmed:
        worst = harmed[0]
        return StepVerdict(
            "rolled_back",
            f"{worst.metric}: canary {worst.canary.rate:.2%} vs champion {worst.champion.rate:.2%} "
            f"(worse, z = {worst.z_harm:.2f} > {boundary:.2f} at look {look})",
            look,
            results,
        )
    if all(r.verdict == "non_inferior" for r in results):
        return StepVerdict("next_step", f"every guard non-inferior at look {look}", look, results)
    if requests >= spec.max_events:
        undecided = [r.metric for r in results if r.verdict != "non_inferior"]
        return StepVerdict(
            "rolled_back",
            f"not shown non-inferior on {', '.join(undecided)} within {spec.max_events} canary requests",
            look,
            results,
        )
    return StepVerdict("waiting", f"undecided at look {look}", look, results)


class RolloutController:
    def __init__(self, registry: Registry, store: MonitorStore, audit: AuditLog | None = None) -> None:
        self.registry = registry
        self.store = store
        self.audit = audit

    def _counts(self, rollout: Rollout, spec: RolloutSpec, deployment: str) -> dict[Guard, DeploymentCounts]:
        return {
            g: self.store.deployment_counts(deployment, rollout.step_started_at, slow_ms=g.latency_ms)
            for g in spec.guards
        }

    def tick(self) -> Rollout | None:
        """Judge the running rollout once; returns it as it now stands (None when none runs)."""
        rollout = self.registry.active_rollout()
        if rollout is None:
            return None
        spec = RolloutSpec.model_validate(rollout.spec)
        # Looks already taken in this step, by any process (several gateways, the CLI): each planned look is
        # spent once, so the step's error rate holds.
        last_look = max(
            (
                int(d.evidence.get("look") or 0)
                for d in self.registry.rollout_decisions(rollout.id)
                if d.action == "waiting" and d.step == rollout.step
            ),
            default=0,
        )
        verdict = judge_step(
            spec, self._counts(rollout, spec, CHAMPION), self._counts(rollout, spec, CANARY), last_look
        )
        if verdict.action == "waiting":
            if verdict.look is not None:  # a look taken without a verdict is evidence too
                self.registry.move_rollout(
                    rollout.id, action="waiting", step=rollout.step, share=rollout.share, state="running",
                    reason=verdict.reason, evidence=verdict.evidence(),
                )  # fmt: skip
            return self.registry.rollout(rollout.id)
        return self._apply(rollout, spec, verdict)

    def _apply(self, rollout: Rollout, spec: RolloutSpec, verdict: StepVerdict) -> Rollout | None:
        # The step to all users is the promotion itself: with no champion traffic left there is nothing to compare.
        last = rollout.step + 1 >= len(spec.steps) or spec.steps[rollout.step + 1] >= 1.0
        if verdict.action == "rolled_back":
            moved = self.registry.move_rollout(
                rollout.id, action="rolled_back", step=rollout.step, share=0.0, state="rolled_back",
                reason=verdict.reason, evidence=verdict.evidence(),
            )  # fmt: skip
            self._audit("rolled_back", rollout, verdict.reason)
        elif last:
            moved = self.registry.move_rollout(
                rollout.id, action="promoted", step=rollout.step, share=0.0, state="promoted",
                reason=f"{verdict.reason}; the canary is the champion now", evidence=verdict.evidence(), promote=True,
            )  # fmt: skip
            self._audit("promoted", rollout, verdict.reason)
        else:
            share = spec.steps[rollout.step + 1]
            moved = self.registry.move_rollout(
                rollout.id, action="next_step", step=rollout.step + 1, share=share, state="running",
                reason=f"{verdict.reason}; canary at {share:.0%} of users", evidence=verdict.evidence(),
            )  # fmt: skip
            self._audit("rollout_step", rollout, f"{verdict.reason}; canary at {share:.0%}")
        _log.warning("rollout %s: %s (%s)", rollout.id, verdict.action, verdict.reason)
        return moved

    def fail_canary(self, rollout_id: str, reason: str) -> None:
        """Roll back a canary that cannot serve (its model fails to load): everyone stays on the champion."""
        step = self.registry.rollout(rollout_id).step
        moved = self.registry.move_rollout(
            rollout_id, action="rolled_back", step=step, share=0.0, state="rolled_back", reason=reason, evidence={}
        )
        if moved is not None:
            self._audit("rolled_back", moved, reason)

    def start(self, loaded: LoadedRolloutSpec, *, default_model: str, actor: str) -> Rollout:
        """Start rolling out what the ``canary`` alias points at (``forgepilot promote canary`` put it there,
        through its gate) against the champion, at the spec's first share."""
        canary = self.registry.deployment(CANARY)
        if canary is None:
            raise UserError(
                "no canary to roll out", hint="promote a gated candidate first: forgepilot promote canary CANDIDATE"
            )
        champion = self.registry.deployment(CHAMPION)
        rollout = self.registry.start_rollout(
            loaded.spec.model_dump(),
            loaded.sha256,
            str(loaded.path),
            champion.target if champion else {"model": default_model},
            canary.target,
        )
        self._audit("rollout_started", rollout, f"{loaded.spec.name}: canary at {rollout.share:.0%}", actor=actor)
        return rollout

    def stop(self, reason: str, actor: str) -> Rollout | None:
        rollout = self.registry.active_rollout()
        if rollout is None:
            return None
        moved = self.registry.move_rollout(
            rollout.id, action="stopped", step=rollout.step, share=0.0, state="stopped", reason=reason, evidence={}
        )
        self._audit("rolled_back", rollout, f"stopped by {actor}: {reason}", actor=actor)
        return moved

    def pause(self, reason: str, actor: str) -> Rollout | None:
        """Everyone back on the champion, the rollout kept at its step to resume later."""
        rollout = self.registry.active_rollout()
        if rollout is None:
            return None
        moved = self.registry.move_rollout(
            rollout.id, action="paused", step=rollout.step, share=0.0, state="paused",
            reason=f"paused by {actor}: {reason}", evidence={},
        )  # fmt: skip
        self._audit("rollout_paused", rollout, f"paused by {actor}: {reason}", actor=actor)
        return moved

    def resume(self, reason: str, actor: str) -> Rollout | None:
        """A paused rollout back at its step's share (the step's evidence starts again)."""
        rollout = self.registry.paused_rollout()
        if rollout is None:
            return None
        share = float(rollout.spec["steps"][rollout.step])
        moved = self.registry.move_rollout(
            rollout.id, action="resumed", step=rollout.step, share=share, state="running",
            reason=f"resumed by {actor}: {reason}", evidence={}, from_state="paused",
        )  # fmt: skip
        self._audit("rollout_resumed", rollout, f"resumed by {actor}: {reason}", actor=actor)
        return moved

    def promote_now(self, reason: str, actor: str) -> Rollout | None:
        """Make the canary the champion at once (an operator's decision, audited as such)."""
        rollout = self.registry.active_rollout()
        if rollout is None:
            return None
        moved = self.registry.move_rollout(
            rollout.id, action="promoted", step=rollout.step, share=0.0, state="promoted",
            reason=f"promoted by {actor}: {reason}", evidence={}, promote=True,
        )  # fmt: skip
        self._audit("promoted", rollout, f"promoted by {actor}: {reason}", actor=actor)
        return moved

    def _audit(self, action: Any, rollout: Rollout, reason: str, actor: str = "rollout-controller") -> None:
        if self.audit is None:
            return
        try:
            self.audit.append(
                action,
                actor=actor,
                target=f"canary {rollout.canary.get('model')}",
                reason=reason,
                details={"rollout": rollout.id, "step": rollout.step, "share": rollout.share},
            )
        except Exception as exc:  # the decision stands in the registry; only its audit line is lost
            _log.error("could not audit rollout %s: %s", rollout.id, exc)
