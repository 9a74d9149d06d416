"""Model preparation: chunk order, sha256 pins, refusal of tampered files, caching."""

from pathlib import Path

import pytest

from genre_agent.errors import ModelError
from genre_agent.llm import models


def _fake_model(tmp_path: Path, payloads: list[bytes], monkeypatch) -> models.GGUFModel:
    import hashlib

    parts = []
    for i, data in enumerate(payloads, start=1):
        d = tmp_path / f"pkg{i}" / "data"
        d.mkdir(parents=True)
        (d / f"part{i:02d}.bin").write_bytes(data)
        parts.append(
            models.Part(
                f"pkg-{i}", f"pkg{i}", f"data/part{i:02d}.bin", hashlib.sha256(data).hexdigest()
            )
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    for i in range(1, len(payloads) + 1):
        (tmp_path / f"pkg{i}" / "__init__.py").write_text("")
    whole = b"".join(payloads)
    return models.GGUFModel(
        name="tiny",
        description="",
        upstream="",
        licence="",
        parts=tuple(parts),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install_hint="pip install tiny",
    )


def test_assemble_joins_in_order_and_verifies(tmp_path: Path, monkeypatch):
    model = _fake_model(tmp_path, [b"GGUF-one-", b"two-", b"three"], monkeypatch)
    out = models.assemble_gguf(model, tmp_path / "out.gguf")
    assert out.read_bytes() == b"GGUF-one-two-three"


def test_tampered_chunk_is_refused(tmp_path: Path, monkeypatch):
    model = _fake_model(tmp_path, [b"GGUF-one-", b"two-"], monkeypatch)
    (tmp_path / "pkg2" / "data" / "part02.bin").write_bytes(b"evil")
    with pytest.raises(ModelError, match="does not match the pinned"):
        models.assemble_gguf(model, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_missing_package_names_the_install_command(tmp_path: Path):
    model = models.GGUFModel(
        name="x",
        description="",
        upstream="",
        licence="",
        parts=(models.Part("no-such-pkg", "no_such_pkg_mod", "a.bin", "0" * 64),),
        size=1,
        sha256="0" * 64,
        install_hint="pip install no-such-pkg",
    )
    with pytest.raises(ModelError, match="no-such-pkg.*pip install no-such-pkg"):
        models.assemble_gguf(model, tmp_path / "x.gguf")


def test_default_model_pins_match_installed_packages():
    # The installed default-model packages hash to the pinned values (checked on every part).
    m = models.QWEN_05B
    assert models.missing_parts(m) == []
    assert m.size == 491_400_064
    for part in m.parts:
        assert models._sha256_file(models._part_path(part)) == part.sha256


def test_resolve_passes_through_hub_ids_and_dirs(tmp_path: Path):
    assert models.resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert models.resolve_model(str(tmp_path)) == str(tmp_path)
