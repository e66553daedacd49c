"""bench/gpu_train.py in its CPU mode: the same step code on a shrunk model, the bare loop, the real
stage (Trainer) and the baseline, their ratios, and the FLOPs counted once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xllava.scale.flops import FlopShape, sample_flops

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_runs_on_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_train.py"), "--cpu", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for path in ("xllava", "stage", "baseline"):
        line = next(x for x in lines if re.match(rf"{path}\s+[\d.]+ samples/s", x))
        assert "samples/s" in line and "tokens/s" in line and "MFU" in line
        assert float(line.split()[1]) > 0
    assert any(x.startswith("xllava / baseline:") for x in lines)
    assert any(x.startswith("stage / bare loop:") for x in lines)

    # the shrunk model's FLOPs, from its shape: decoder linears once, LoRA r128 adapters once
    h, inter, layers, vocab, r = 256, 688, 2, 1025, 128
    decoder = layers * (4 * h * h + 3 * h * inter)
    lora = layers * r * (4 * (h + h) + 3 * (h + inter))
    projector = 64 * h + h + h * h + h
    expected = 2 * sample_flops(FlopShape(decoder, projector, lora, layers, h, vocab), 1 + 16 + 32, 16, 16, "lora")
    printed = float(re.search(r"model FLOPs per step ([\d.,]+) G", done.stdout).group(1).replace(",", "")) * 1e9
    assert printed == pytest.approx(expected, rel=1e-4)
