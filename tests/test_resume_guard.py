"""Resuming trains the right thing or nothing: real checkpoints of the fast tiny run, damaged on disk.

- a changed learning rate after an interruption refuses to resume and names the field; a changed
  step budget resumes; `--force` starts over;
- a truncated newest checkpoint is skipped with a warning naming the file, and training falls back
  to the previous complete one (the loss curve has every step once);
- each kind of damage (truncated, emptied, deleted file, no completion marker) is named;
- a failed `--force` redo (a truncated training image) leaves the previous model and manifest in place,
  and the image error names the record (file:line) and the image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from tests.conftest import fast_recipe
from xllava.pipeline import Pipeline
from xllava.train.checkpoints import MARKER, ResumeRefused, damage, resume_point
from xllava.train.data import DataError, load_samples

# the fast run's 4 steps with checkpoints 2 and 4; the stages after instruct are left out
CKPT = ("instruct.save_steps=2", "stages=[world, datagen, vocab, tower, align, instruct]")


def pipeline(run: Path, *sets: str) -> Pipeline:
    return Pipeline(fast_recipe(run, *CKPT, *sets), log=lambda _: None)


@pytest.fixture(scope="module")
def trained(fast_run: Path, tmp_path_factory) -> Path:
    """A copy of the fast run whose instruct stage was retrained with checkpoints every 2 steps,
    then left as a killed run leaves it: checkpoints, no manifest."""
    run = tmp_path_factory.mktemp("guard") / "run"
    shutil.copytree(fast_run, run)
    pipeline(run).run(only=["instruct"])
    assert not (run / "instruct.next").exists()
    (run / "instruct" / "manifest.json").unlink()
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A fresh copy of `trained` for each test to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def checkpoints(run: Path) -> Path:
    return run / "instruct" / "checkpoints"


def loss_steps(run: Path) -> list[int]:
    return [h["step"] for h in json.loads((run / "instruct" / "log_history.json").read_text()) if "loss" in h]


def test_changed_lr_refuses_and_names_the_field_budget_may_change(run: Path) -> None:
    marker = json.loads((checkpoints(run) / "checkpoint-4" / MARKER).read_text())
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(marker["files"])
    assert any(name.endswith(".safetensors") for name in marker["files"])  # the weights that train
    lr = marker["config"]["lr"]
    with pytest.raises(ResumeRefused, match=rf"lr: {lr!r} in the checkpoint, 0\.000123 now.*--force"):
        pipeline(run, "instruct.lr=0.000123").run(only=["instruct"])
    with pytest.raises(ResumeRefused, match=r"seed: 42 in the checkpoint, 7 now"):
        pipeline(run, "instruct.seed=7").run(only=["instruct"])
    # the step budget is not part of the identity: 4 -> 6 steps resumes from checkpoint-4
    pipeline(run, "instruct.max_steps=6").run(only=["instruct"])
    assert loss_steps(run) == list(range(1, 7))
    # --force starts over under the new config, and the marker records it
    pipeline(run, "instruct.lr=0.000123").run(only=["instruct"], force=True)
    assert loss_steps(run) == list(range(1, 5))
    newest = sorted(checkpoints(run).glob("checkpoint-*"))[-1]
    assert json.loads((newest / MARKER).read_text())["config"]["lr"] == 0.000123


def test_truncated_newest_checkpoint_falls_back_with_a_warning(run: Path, caplog) -> None:
    weights = next((checkpoints(run) / "checkpoint-4").glob("*.safetensors"))
    with weights.open("r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with caplog.at_level(logging.WARNING, logger="xllava.train"):
        pipeline(run).run(only=["instruct"])
    assert any(str(weights) in r.getMessage() and "bytes" in r.getMessage() for r in caplog.records), caplog.text
    assert loss_steps(run) == [1, 2, 3, 4]  # resumed from checkpoint-2: steps 3 and 4 trained again, once each
    assert damage(checkpoints(run) / "checkpoint-4") is None  # rewritten whole when step 4 came again


def test_every_kind_of_damage_is_named(run: Path, tmp_path: Path) -> None:
    source = checkpoints(run) / "checkpoint-4"
    identity = json.loads((source / MARKER).read_text())["config"]

    def damaged(name: str, harm) -> str:
        folder = tmp_path / name / "checkpoints"
        shutil.copytree(checkpoints(run), folder)
        harm(folder / "checkpoint-4")
        warnings: list[str] = []
        chosen = resume_point(folder, identity, "instruct", warn=warnings.append)
        assert chosen == str(folder / "checkpoint-2"), name
        assert len(warnings) == 1
        return warnings[0]

    assert "rng_state.pth is 0 bytes" in damaged("empty-rng", lambda c: (c / "rng_state.pth").write_bytes(b""))
    assert "scheduler.pt is missing" in damaged("no-scheduler", lambda c: (c / "scheduler.pt").unlink())
    assert "optimizer.pt does not match the checksum" in damaged(
        "flipped", lambda c: _flip_byte(c / "optimizer.pt"))
    assert f"{MARKER} is missing" in damaged("no-marker", lambda c: (c / MARKER).unlink())
    assert resume_point(source.parent, identity, "instruct") == str(source)
    # a redone upstream stage (another hash) refuses too, naming it
    started_from = json.loads((source / MARKER).read_text())["started_from"]
    assert started_from["upstream"], started_from  # the pipeline recorded the upstream stages' hashes
    other = {**started_from, "upstream": {k: "0" * 16 for k in started_from["upstream"]}}
    with pytest.raises(ResumeRefused, match=r"started from: upstream\.\w+: '[0-9a-f]+' in the checkpoint"):
        resume_point(source.parent, identity, "instruct", other)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_failed_force_redo_leaves_the_previous_model(run: Path) -> None:
    pipeline(run).run(only=["instruct"])  # finish the stage: a model and a manifest
    model = run / "instruct" / "model" / "model.safetensors"
    before, manifest = sha(model), (run / "instruct" / "manifest.json").read_text()

    p = pipeline(run)
    sources = p.recipe.instruct.sources()
    sample = load_samples([run / s.path for s in sources],
                          image_roots=[run / s.image_root if s.image_root else None for s in sources],
                          languages=p.recipe.instruct.languages, tasks=p.recipe.instruct.tasks)[0]
    with sample.image.open("r+b") as f:
        f.truncate(40)  # a PNG cut inside its first chunk
    with pytest.raises(DataError) as err:
        p.run(only=["instruct"], force=True)
    file, line = sample.origin
    assert err.value.file == file and err.value.line == line and err.value.field == "image"
    assert str(sample.image) in str(err.value) and "unreadable" in str(err.value)
    assert sha(model) == before
    assert (run / "instruct" / "manifest.json").read_text() == manifest
