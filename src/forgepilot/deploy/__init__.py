"""Deployments that serve: the champion and a canary for a share of users, rolled out by a sequential test."""

from forgepilot.deploy.controller import CANARY, CHAMPION, RolloutController, StepVerdict, guard_rates, judge_step
from forgepilot.deploy.router import DeploymentRouter, ServingDeployment, TrafficSplit, user_bucket
from forgepilot.deploy.sequential import LOOKS, GuardResult, Rates, judge, look_boundary, spent
from forgepilot.deploy.spec import (
    Guard,
    GuardMetric,
    LoadedRolloutSpec,
    RolloutSpec,
    RolloutSpecError,
    load_rollout_spec,
)

__all__ = [
    "CANARY",
    "CHAMPION",
    "LOOKS",
    "DeploymentRouter",
    "Guard",
    "GuardMetric",
    "GuardResult",
    "LoadedRolloutSpec",
    "Rates",
    "RolloutController",
    "RolloutSpec",
    "RolloutSpecError",
    "ServingDeployment",
    "StepVerdict",
    "TrafficSplit",
    "guard_rates",
    "judge",
    "judge_step",
    "load_rollout_spec",
    "look_boundary",
    "spent",
    "user_bucket",
]
