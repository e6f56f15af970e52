"""Export the registry to MLflow (extra ``mlflow``): evaluation runs and gate decisions become MLflow runs.

Each evaluation run is an MLflow run in the experiment ``forgepilot-evals`` (parameters: model, suite and its
hash, context sources, generation parameters; metrics: the run's figures; tags: ids and the model's identity).
Each gate decision is a run in ``forgepilot-gates`` with the decision as a tag, one metric per check (1 pass,
0.5 warn, 0 fail) and the dossier files as artifacts. Exporting twice updates nothing twice: runs are found by
their ForgePilot id tag.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forgepilot.errors import MissingExtra
from forgepilot.registry.store import Registry

_STATUS_VALUE = {"PASS": 1.0, "WARN": 0.5, "FAIL": 0.0}


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise MissingExtra("mlflow", "mlflow") from exc
    return mlflow


def _flat_metrics(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            _flat_metrics("".join(c if c.isalnum() or c in "._-/ " else "_" for c in key), v, out)


def _existing(client: Any, experiment_id: str, fp_id: str) -> str | None:
    found = client.search_runs([experiment_id], filter_string=f"tags.forgepilot_id = '{fp_id}'", max_results=1)
    return found[0].info.run_id if found else None


def export(registry: Registry, tracking_uri: str) -> dict[str, int]:
    """Write every registered run and decision to the MLflow tracking store at ``tracking_uri``."""
    mlflow = _mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)

    def experiment(name: str) -> str:
        exp = client.get_experiment_by_name(name)
        return str(exp.experiment_id) if exp is not None else str(client.create_experiment(name))

    evals, gates = experiment("forgepilot-evals"), experiment("forgepilot-gates")
    counts = {"runs": 0, "decisions": 0, "skipped": 0}
    for entity in registry.entities("run", limit=100_000):
        if _existing(client, evals, entity.id):
            counts["skipped"] += 1
            continue
        data = entity.data
        cfg = data.get("config") or {}
        run = client.create_run(evals, run_name=entity.name, tags={"forgepilot_id": entity.id, "kind": "eval"})
        params = {
            "suite": data.get("suite"),
            "suite_sha256": data.get("suite_sha256"),
            "model": json.dumps(cfg.get("model"), sort_keys=True)[:500],
            "sources": ",".join(cfg.get("sources") or []) or "in-file only",
            "params": json.dumps(cfg.get("params"), sort_keys=True)[:500],
        }
        for k, v in params.items():
            client.log_param(run.info.run_id, k, str(v))
        values: dict[str, float] = {}
        _flat_metrics("", (data.get("summary") or {}).get("metrics", {}), values)
        latency = (data.get("summary") or {}).get("latency", {})
        _flat_metrics("latency_s", latency.get("latency_s", {}), values)
        for k, v in values.items():
            client.log_metric(run.info.run_id, k, v)
        client.set_terminated(run.info.run_id)
        counts["runs"] += 1
    for entity in registry.entities("decision", limit=100_000):
        if _existing(client, gates, entity.id):
            counts["skipped"] += 1
            continue
        data = entity.data
        run = client.create_run(
            gates,
            run_name=entity.name,
            tags={
                "forgepilot_id": entity.id,
                "kind": "gate",
                "decision": data.get("decision", ""),
                "spec_sha256": data.get("spec_sha256", ""),
                "candidate": data.get("candidate", ""),
            },
        )
        for check in data.get("checks", []):
            key = "".join(c if c.isalnum() or c in "._-/ " else "_" for c in check["name"])
            client.log_metric(run.info.run_id, f"check.{key}", _STATUS_VALUE.get(check["status"], 0.0))
        for path in (data.get("dossier") or {}).values():
            if Path(path).is_file():
                client.log_artifact(run.info.run_id, path)
        client.set_terminated(run.info.run_id, status="FINISHED" if data.get("decision") != "FAIL" else "FAILED")
        counts["decisions"] += 1
    del mlflow
    return counts
