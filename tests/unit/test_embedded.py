"""The model store on small real part packages made by the test (same code path as the shipped models)."""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

import pytest

from forgepilot.backends.embedded import EMBEDDED_MODELS, EmbeddedModel, ModelPart, ModelStore, embedded_model
from forgepilot.errors import ModelIntegrityError, ModelNotAvailable, UserError

CHUNKS = [b"GGUF" + os.urandom(3000), os.urandom(5000), os.urandom(1234)]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EmbeddedModel:
    """An embedded model whose three parts are installed as real importable packages on sys.path."""
    site = tmp_path / "site"
    parts = []
    for i, chunk in enumerate(CHUNKS, start=1):
        pkg = site / f"fp_test_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("", encoding="utf-8")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        resource = f"data/part{i:02d}.bin"
        parts.append(ModelPart(f"fp-test-part{i}", "1.0", f"fp_test_part{i}", resource, len(chunk), _sha(chunk)))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(CHUNKS)
    return EmbeddedModel(
        key="tiny",
        title="tiny test model",
        family="plain",
        filename="tiny.gguf",
        size=len(whole),
        sha256=_sha(whole),
        parts=tuple(parts),
        extra="models",
        role="test",
        context_length=128,
    )


def test_prepare_assembles_verifies_and_marks(model: EmbeddedModel, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    seen: list[tuple[int, int]] = []
    path = store.prepare(model, progress=lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == b"".join(CHUNKS)
    assert seen[-1] == (model.size, model.size)
    status = store.status(model)
    assert status.prepared and status.verified and status.state == "verified"
    assert list((tmp_path / "models").glob("*.partial")) == []


def test_missing_part_names_the_pip_command(model: EmbeddedModel, tmp_path: Path) -> None:
    missing = model.parts[1]
    absent = ModelPart(**{**missing.__dict__, "module": "fp_not_installed"})
    broken = EmbeddedModel(**{**model.__dict__, "parts": (model.parts[0], absent, model.parts[2])})
    with pytest.raises(ModelNotAvailable) as info:
        ModelStore(tmp_path / "m").prepare(broken)
    line = info.value.one_line()
    assert "missing 1 of its 3 parts" in line
    assert "pip install fp-test-part2==1.0" in line
    assert info.value.exit_code == 4


def test_all_parts_missing_suggests_the_extra(model: EmbeddedModel, tmp_path: Path) -> None:
    absent = tuple(ModelPart(**{**p.__dict__, "module": f"fp_absent_{i}"}) for i, p in enumerate(model.parts))
    with pytest.raises(ModelNotAvailable) as info:
        ModelStore(tmp_path / "m").prepare(EmbeddedModel(**{**model.__dict__, "parts": absent}))
    assert info.value.one_line().endswith("(pip install 'forgepilot[models]')")


def test_corrupt_part_is_refused_and_named(model: EmbeddedModel, tmp_path: Path) -> None:
    spec = importlib.util.find_spec(model.parts[2].module)
    assert spec is not None and spec.submodule_search_locations
    part_file = Path(list(spec.submodule_search_locations)[0]) / model.parts[2].resource
    part_file.write_bytes(b"tampered" + CHUNKS[2][8:])
    store = ModelStore(tmp_path / "models")
    with pytest.raises(ModelIntegrityError) as info:
        store.prepare(model)
    assert "fp-test-part3==1.0" in info.value.one_line()
    assert info.value.exit_code == 6
    assert not store.path(model).exists()
    assert list((tmp_path / "models").glob("*.partial")) == []


def test_verify_detects_a_tampered_model_file(model: EmbeddedModel, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    path = store.prepare(model)
    with path.open("r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff")
    assert store.status(model).verified is False  # mtime/size marker no longer matches
    with pytest.raises(ModelIntegrityError, match="refusing"):
        store.verify(model)
    with pytest.raises(ModelIntegrityError):
        store.ensure(model)
    assert store.prepare(model, force=True).read_bytes() == b"".join(CHUNKS)


def test_ensure_trusts_a_fresh_marker_without_rehashing(model: EmbeddedModel, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.prepare(model)
    calls: list[int] = []
    store.ensure(model, progress=lambda d, t: calls.append(d))
    assert calls == []  # no hashing pass


def test_verify_without_prepare_says_what_to_run(model: EmbeddedModel, tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable) as info:
        ModelStore(tmp_path / "models").verify(model)
    assert "(forgepilot models prepare tiny)" in info.value.one_line()


@pytest.mark.parametrize("model", list(EMBEDDED_MODELS.values()), ids=list(EMBEDDED_MODELS))
def test_catalog_is_consistent(model: EmbeddedModel) -> None:
    assert sum(p.size for p in model.parts) == model.size
    assert len({p.distribution for p in model.parts}) == len(model.parts)
    assert all(len(p.sha256) == 64 for p in model.parts) and len(model.sha256) == 64


def test_lookup_by_key_or_name() -> None:
    assert embedded_model("llamacpp:qwen2.5-coder-0.5b") is embedded_model("qwen2.5-coder-0.5b")
    with pytest.raises(UserError, match="no embedded model"):
        embedded_model("gpt-5")
