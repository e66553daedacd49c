"""Killing `xllava run` during stage 2 and running it again: stage 1 is not redone, and training
continues from the last checkpoint with the loss curve picking up where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FAST, TINY

pytestmark = pytest.mark.slow


def _command(run_dir: Path) -> list[str]:
    sets = [*FAST, f"output_dir={run_dir}", "stages=[world, datagen, align, instruct]", "model.projector_init=random",
            "instruct.max_steps=40", "instruct.save_steps=4", "instruct.logging_steps=1"]
    args = [sys.executable, "-m", "xllava.cli", "run", str(TINY)]
    for s in sets:
        args += ["--set", s]
    return args


def test_kill_during_stage_two_then_resume(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(_command(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    checkpoints = tmp_path / "instruct" / "checkpoints"
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None:
        if (checkpoints / "checkpoint-8" / "xllava-checkpoint.json").exists():  # its completion marker, written last
            break
        time.sleep(0.05)
    assert first.poll() is None, "the run ended before it could be interrupted:\n" + first.stdout.read().decode()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "instruct" / "manifest.json").exists()
    align_manifest = (tmp_path / "align" / "manifest.json").read_text()
    align_weights = (tmp_path / "align" / "model" / "model.safetensors").stat().st_mtime_ns
    state = json.loads((checkpoints / "checkpoint-8" / "trainer_state.json").read_text())
    before = {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}

    second = subprocess.run(_command(tmp_path), env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    out = second.stdout + second.stderr
    assert "align: complete, skipped" in out
    assert "instruct: resuming" in out
    assert (tmp_path / "align" / "manifest.json").read_text() == align_manifest
    assert (tmp_path / "align" / "model" / "model.safetensors").stat().st_mtime_ns == align_weights

    history = json.loads((tmp_path / "instruct" / "log_history.json").read_text())
    steps = [h["step"] for h in history if "loss" in h]
    assert steps == list(range(1, 41)), steps  # one continuous curve: no step twice, none missing
    after = {h["step"]: h["loss"] for h in history if "loss" in h}
    assert all(after[s] == loss for s, loss in before.items())  # the pre-kill part is kept as it was
    # The weights came back too: a resume that silently restarted from the stage's initial weights
    # would log a loss near step 1's again right after the checkpoint.
    resumed_from = max(before)
    assert before[resumed_from] < before[1] - 0.5, before  # the curve had moved, so the check can bite
    first_new = after[resumed_from + 1]
    assert abs(first_new - before[resumed_from]) < abs(first_new - before[1]), (before, after)
