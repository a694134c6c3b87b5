"""numpy's BLAS runs one thread in an Attune process (``attune/__init__.py``), unless the caller chose: a second
OpenBLAS thread doubles the CPU the end-of-turn emotion reading pays and spins on the engines' core."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LAYER = "unit"  # STYLE.md layer 1: a fresh interpreter, no models

THREADS = "import attune, numpy, os; print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'])"


def _run(env: dict[str, str]) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", THREADS], env=env, capture_output=True, text=True, check=True)
    threads, setting = out.stdout.split()
    return int(threads), setting


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_importing_attune_first_keeps_numpy_to_one_blas_thread_unless_the_caller_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    assert _run(env) == (1, "1")  # OpenBLAS starts no thread pool of its own
    threads, setting = _run({**env, "OPENBLAS_NUM_THREADS": "2"})
    assert setting == "2" and threads == (2 if (os.cpu_count() or 1) >= 2 else threads)
