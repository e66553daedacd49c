"""bench/train_throughput.py on the tiny recipe: both sides train, report and give a ratio."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_bench_reports_both_sides_and_their_ratio(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--recipe",
                           str(ROOT / "recipes" / "tiny.yaml"), "--steps", "2", "--samples", "256",
                           "--run-dir", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "256 samples of" in out and re.search(r"^machine: .+, \d+ cpus, torch \w+", out, re.M)
    padded = {}
    for side in ("naive", "xllava"):
        found = re.search(rf"^{side} +([\d.]+) samples/s over the epoch .*padded to ([\d.]+)x\)", out, re.M)
        assert found, out
        assert float(found[1]) > 0
        padded[side] = float(found[2])
    # xllava's batches are grouped by length, the naive side's are random
    assert padded["xllava"] <= padded["naive"]
    assert re.search(r"^ratio xllava/naive: [\d.]+x  \(incl\. cache: [\d.]+x\)$", out, re.M)
