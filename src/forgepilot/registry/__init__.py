"""The registry: models, candidates, prompt versions, datasets, eval runs, gate decisions, deployments, lineage."""

from forgepilot.registry.store import (
    ENTITY_TYPES,
    Deployment,
    Edge,
    Entity,
    EntityType,
    PinnedSpec,
    Registry,
    Rollout,
    RolloutDecision,
    RolloutState,
    content_id,
    open_registry,
)

__all__ = [
    "ENTITY_TYPES",
    "Deployment",
    "Edge",
    "Entity",
    "EntityType",
    "PinnedSpec",
    "Registry",
    "Rollout",
    "RolloutDecision",
    "RolloutState",
    "content_id",
    "open_registry",
]
