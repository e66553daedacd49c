"""bench/gpu_train.py in its CPU mode: the same step code on a shrunk model, both paths, a ratio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_runs_on_cpu() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_train.py"), "--cpu"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for path in ("xllava", "baseline"):
        line = next(x for x in lines if x.startswith(path))
        assert "samples/s" in line and "tokens/s" in line and "MFU" in line
        assert float(line.split()[1]) > 0
    assert any(x.startswith("xllava / baseline:") for x in lines)
    assert "model FLOPs per step" in done.stdout
