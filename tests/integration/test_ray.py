"""`eval run --ray` on a real local Ray head (`ray start --head`, stopped after): the cases run in Ray workers on
the embedded Gemma model and the sandbox, the results are those of a local run, and a worker killed mid-run is
restarted and its case sent again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from forgepilot.config import Settings, load_settings
from forgepilot.evals import EvalRunner, GenerationParams, RunConfig, load_suite
from forgepilot.evals.store import EvalStore
from forgepilot.sandbox import Sandbox

from .conftest import free_port

ray = pytest.importorskip("ray")

SUITE = """\
schema_version: 1
name: arith
kind: functional
cases:
""" + "".join(
    f"""  - id: {name}
    prompt: |
      def {name}(a, b):
          \"\"\"Return {doc}.\"\"\"
    tests: |
      assert {name}(6, 3) == {want}
"""
    for name, doc, want in [
        ("add", "a + b", 9),
        ("sub", "a - b", 3),
        ("mul", "a * b", 18),
        ("div", "a // b", 2),
        ("mod", "a % b", 0),
        ("maximum", "the larger of a and b", 6),
    ]
)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    ray_bin = str(Path(sys.executable).parent / "ray")
    temp = Path(tempfile.mkdtemp(prefix="fp-ray-"))
    port = free_port()
    started = subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def _settings(state: Path, gemma_path: Path) -> Settings:
    return load_settings(
        state_dir=state,
        default_model="llamacpp:gemma",
        models={"llamacpp:gemma": {"family": "gemma3", "path": str(gemma_path)}},
        llama={"n_ctx": 1024, "n_threads": 1},
    )


def _run(settings: Settings, suite_path: Path, **runner: object) -> list[tuple[str, str, float | None, list[str]]]:
    import asyncio

    store = EvalStore(settings.state_dir / "evals.db")
    sandbox = Sandbox(workers=1)
    config = RunConfig("llamacpp:gemma", GenerationParams(max_tokens=40))
    r = EvalRunner(settings, store, sandbox=sandbox, **runner)  # type: ignore[arg-type]

    async def go() -> str:
        try:
            return (await r.run(load_suite(str(suite_path)), config)).id
        finally:
            await r.aclose()

    run_id = asyncio.run(go())
    results = store.results(run_id)
    store.close()
    return [(x["case_id"], x["status"], x["score"], [s["text"] for s in x["samples"]]) for x in results]


def test_ray_results_match_a_local_run_and_survive_a_killed_worker(
    tmp_path: Path, gemma_path: Path, ray_head: str
) -> None:
    from forgepilot.evals.ray_fanout import RayFanout

    suite_path = tmp_path / "arith.yaml"
    suite_path.write_text(SUITE, encoding="utf-8")
    local = _run(_settings(tmp_path / "local", gemma_path), suite_path)
    assert len(local) == 6

    fanned = _settings(tmp_path / "ray", gemma_path)
    fanout = RayFanout(ray_head, fanned, fanned.state_dir / "evals.db", workers=2)
    assert _run(fanned, suite_path, fanout=fanout) == local

    killed = _settings(tmp_path / "killed", gemma_path)
    fanout = RayFanout(ray_head, killed, killed.state_dir / "evals.db", workers=2)
    victims: list[int] = []

    def kill_one(done: int, total: int) -> None:
        if done == 1 and not victims:  # the first result is in: the rest are queued or running
            victims.append(fanout.worker_pids()[1])
            os.kill(victims[0], signal.SIGKILL)

    assert _run(killed, suite_path, fanout=fanout, progress=kill_one) == local
    assert victims

    # Interrupted after two cases (as Ctrl-C would), then resumed: only the rest run, and the run is the local one.
    stopped = _settings(tmp_path / "stopped", gemma_path)

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    fanout = RayFanout(ray_head, stopped, stopped.state_dir / "evals.db", workers=2)
    with pytest.raises(KeyboardInterrupt):
        _run(stopped, suite_path, fanout=fanout, progress=interrupt)
    seen: list[int] = []
    fanout = RayFanout(ray_head, stopped, stopped.state_dir / "evals.db", workers=2)
    assert _run(stopped, suite_path, fanout=fanout, progress=lambda done, total: seen.append(done)) == local
    assert seen[0] == 2  # resumed with the two cases stored before the interruption


def test_ray_dataset_build_is_the_local_build_and_survives_a_killed_worker(tmp_path: Path, ray_head: str) -> None:
    from forgepilot.datagen.pipeline import BuildOptions, open_builder
    from forgepilot.datagen.ray_fanout import RayFileFanout
    from tests.unit.test_datagen import make_repos, settings_for

    roots = make_repos(tmp_path / "repos")
    local = open_builder(settings_for(tmp_path / "local")).build(roots, BuildOptions(out=tmp_path / "local-out"))

    s = settings_for(tmp_path / "ray")
    fanout = RayFileFanout(ray_head, s, None, workers=2)
    victims: list[int] = []

    def kill_one(stage: str, done: int, total: int) -> None:
        if stage.startswith("files") and done == 2 and not victims:
            victims.append(fanout.worker_pids()[1])
            os.kill(victims[0], signal.SIGKILL)

    fanned = open_builder(s, progress=kill_one, fanout=fanout).build(roots, BuildOptions(out=tmp_path / "ray-out"))
    fanout.close()
    assert victims and fanned.instances == local.instances > 0
    assert fanned.card["dataset_sha256"] == local.card["dataset_sha256"]
    assert fanned.rejections.by_reason == local.rejections.by_reason and fanned.failures == local.failures


def test_ray_distillation_is_the_local_one(tmp_path: Path, gemma_path: Path, ray_head: str) -> None:
    from forgepilot.backends.resolve import open_backend
    from forgepilot.datagen.distill import Distiller, Seed
    from forgepilot.datagen.ray_fanout import RaySeedFanout
    from forgepilot.datagen.types import Rejections
    from forgepilot.prompts import builtin_registry

    s = _settings(tmp_path / "state", gemma_path)
    seeds = [Seed("r", f"m{i}.py", "python", 1, f"def scale_{i}(x):\n    return x * {i}\n") for i in range(4)]

    def distil(fanout: RaySeedFanout | None) -> tuple[list[str], dict[str, int]]:
        import asyncio

        sandbox = Sandbox(workers=1)
        distiller = Distiller(open_backend("llamacpp:gemma", s), builtin_registry(), sandbox, max_tokens=96)
        rejected = Rejections()

        async def go() -> list[str]:
            try:
                return [i.completion for i in await distiller.run(seeds, rejected, fanout=fanout)]
            finally:
                await distiller.teacher.aclose()

        kept = asyncio.run(go())
        sandbox.close()
        return kept, rejected.by_reason

    local = distil(None)
    assert sum(local[1].values()) + len(local[0]) == 4
    assert distil(RaySeedFanout(ray_head, s, "llamacpp:gemma", max_tokens=96, workers=2)) == local
