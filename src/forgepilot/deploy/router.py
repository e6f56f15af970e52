"""Which deployment answers a user: the champion, or the canary for its share of users, sticky per user.

A deployment is what the registry's alias points at: a model, its context sources and generation parameters
(``gates.promote`` writes them). The router reads the registry when it changes (one cheap query, at most every
``poll_s``), so promoting, starting a rollout or rolling back takes effect without a restart. Without a champion
in the registry the settings' default model serves as the champion.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from forgepilot.registry import Registry

_log = logging.getLogger("forgepilot.deploy")


@dataclass(frozen=True)
class ServingDeployment:
    alias: str
    model: str
    #: Context sources it serves with (None: what the settings switch on).
    sources: frozenset[str] | None = None
    candidate: str | None = None
    #: Why this is not what the registry says (an alias pointing at a model this server does not have).
    note: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "model": self.model,
            "sources": sorted(self.sources) if self.sources is not None else None,
            "candidate": self.candidate,
            **({"note": self.note} if self.note else {}),
        }


@dataclass(frozen=True)
class TrafficSplit:
    champion: ServingDeployment
    canary: ServingDeployment | None = None
    share: float = 0.0
    rollout_id: str | None = None


def user_bucket(user: str, salt: str) -> float:
    """Where ``user`` falls in [0, 1): the same user, the same place, for the life of one rollout (``salt``)."""
    digest = hashlib.sha256(f"{salt}\x00{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class DeploymentRouter:
    def __init__(
        self,
        registry: Registry | None,
        *,
        default_model: str,
        known: Callable[[str], bool] = lambda name: True,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_broken_canary: Callable[[str, str], None] | None = None,
    ) -> None:
        self.registry = registry
        #: Told (rollout id, why) when a rollout's canary names a model this server cannot serve.
        self.on_broken_canary = on_broken_canary
        # What serves without a champion in the registry is the champion all the same: a rollout compares
        # against it, and reports group by it.
        self.default = ServingDeployment("champion", default_model)
        self.known = known
        self.poll_s = poll_s
        self._clock = clock
        self._lock = threading.Lock()
        self._version: tuple[float, float] | None = None
        self._checked = float("-inf")
        self._split = TrafficSplit(self.default)

    def split(self) -> TrafficSplit:
        """The current split (re-read from the registry when it changed, at most every ``poll_s``)."""
        now = self._clock()
        if self.registry is None or now - self._checked < self.poll_s:
            return self._split
        with self._lock:
            self._checked = now
            version = self.registry.serving_version()
            if version != self._version:
                self._version = version
                self._split = self._load()
        return self._split

    def refresh(self) -> TrafficSplit:
        """Re-read the registry now (after this process changed it)."""
        self._checked = float("-inf")
        self._version = None
        return self.split()

    def _deployment(self, alias: str, target: dict[str, Any]) -> ServingDeployment:
        model = str(target.get("model") or "")
        sources = target.get("sources")
        found = ServingDeployment(
            alias, model, frozenset(sources) if sources is not None else None, target.get("candidate")
        )
        if not self.known(model):
            return ServingDeployment(
                alias,
                self.default.model,
                note=f"{alias} points at {model!r}, which this server does not have: serving {self.default.model}",
            )
        return found

    def _load(self) -> TrafficSplit:
        assert self.registry is not None
        champion_row = self.registry.deployment("champion")
        champion = self._deployment("champion", champion_row.target) if champion_row else self.default
        if champion.note:
            _log.warning("%s", champion.note)
        rollout = self.registry.active_rollout()
        if rollout is None or rollout.share <= 0:
            return TrafficSplit(champion)
        model = str(rollout.canary.get("model") or "")
        if not self.known(model):  # roll back, not an outage: everyone stays on the champion
            if self.on_broken_canary is not None:
                self.on_broken_canary(rollout.id, f"the canary's model {model!r} is not available on this server")
            return TrafficSplit(champion)
        return TrafficSplit(champion, self._deployment("canary", rollout.canary), rollout.share, rollout.id)

    def choose(self, user: str) -> ServingDeployment:
        """The deployment that answers ``user`` now."""
        split = self.split()
        if split.canary is not None and user_bucket(user, split.rollout_id or "") < split.share:
            return split.canary
        return split.champion
