"""kill -9 of a real generator process at a random moment, then a re-run: one record per key, no
valid record lost (and a torn last line, as a kill can leave one, is repaired)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.datagen_util import build_small_world
from xllava.datagen.openai_server import FaultConfig
from xllava.datagen.store import read_records
from xllava.world.teacher import start_world_teacher

TASKS = "object,location,atmosphere"


def _generator(world: Path, out: Path, base_url: str) -> list[str]:
    return [sys.executable, "-m", "xllava.datagen", "generate", str(world), str(out), "--base-url", base_url,
            "-s", "teacher.model=world-teacher", "-s", f"tasks=[{TASKS}]", "-s", "selection.min_main_objects=1",
            "-s", "teacher.concurrency=4", "--no-progress"]


def test_kill_9_then_rerun_keeps_exactly_one_record_per_key(tmp_path):
    world = build_small_world(tmp_path / "world")
    out = tmp_path / "out"
    store = out / "store.jsonl"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    env = {**os.environ, "OPENAI_API_KEY": "unused"}
    pairs = 48 * len(TASKS.split(","))  # every scene of the small world (40 train + 8 eval)
    with start_world_teacher(world, FaultConfig(latency_s=0.05, rate_500=0.05, seed=seed)) as server:
        proc = subprocess.Popen(_generator(world, out, server.base_url), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not (store.exists() and store.stat().st_size > 0):  # it is writing records
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the generator wrote nothing"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.8))
        assert proc.poll() is None, f"seed {seed}: the generator finished before the kill"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL

        before = read_records(store)  # tolerates a torn last line
        assert 0 < len(before) < pairs, f"seed {seed}: {len(before)} records at the kill"
        with store.open("ab") as f:  # what a kill inside a write leaves behind
            f.write(b'{"key":"torn-by-the-test","status":"o')

        rerun = subprocess.run(_generator(world, out, server.base_url), env=env, capture_output=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]

    final = read_records(store)
    keys = [r["key"] for r in final]
    assert len(keys) == len(set(keys)) == pairs, f"seed {seed}"
    assert "torn-by-the-test" not in keys
    by_key = {r["key"]: r for r in final}
    valid_before = [r for r in before if r["status"] == "ok"]
    assert valid_before and all(by_key[r["key"]] == r for r in valid_before), f"seed {seed}"
    assert (out / "mvif.jsonl").stat().st_size > 0
