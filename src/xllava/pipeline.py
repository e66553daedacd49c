"""`xllava run RECIPE`: the stages in order, skipping completed ones, resuming an interrupted one.

A stage is complete when its directory holds `manifest.json` whose config hash matches: the hash
covers the stage's own config, the recipe fields it reads and the hashes of the stages whose outputs
it reads (STAGE_READS), so changing the world redoes everything after it, and changing the LLM
redoes everything but the world, the generated data and the tower. A stage without a manifest is
resumed (training restarts from its last complete checkpoint). Each stage directory also holds the
resolved config that made it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from xllava.config import Recipe, dump_config
from xllava.io import stamp_matches, write_stamp
from xllava.model.assemble import assemble, save_llava
from xllava.model.llm_sources import materialise_llm

MANIFEST = "manifest.json"


def code_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5,
        )
        if out.returncode == 0:
            return out.stdout.strip()
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xllava")
    except PackageNotFoundError:
        return "unknown"



def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# What each stage reads, so that its hash covers that and no more: recipe fields besides its own
# section, and the stages whose outputs it opens (their hashes cover their own inputs in turn; a stage
# the recipe does not run adds nothing). A from-scratch LLM's tokenizer is learned on the training
# texts (Pipeline._world_texts), so vocab and lm read the data lists. The tower reads only the world
# and the vision config: runs that differ in the LLM, its seed included, share it.
STAGE_READS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "world": ((), ()),
    "datagen": ((), ("world",)),
    "vocab": (("model.llm", "align.data", "instruct.data"), ("world", "datagen")),
    "lm": (("model.llm", "align.data", "instruct.data"), ("world", "datagen", "vocab")),
    "tower": (("model.vision",), ("world",)),
    "align": (("model",), ("world", "datagen", "vocab", "lm", "tower")),
    "instruct": (("model",), ("world", "datagen", "vocab", "lm", "tower", "align")),
    "eval": ((), ("world", "datagen", "vocab", "lm", "tower", "align", "instruct")),
    "report": ((), ("world", "datagen", "vocab", "lm", "tower", "align", "instruct", "eval")),
}


def _recipe_field(recipe: Recipe, dotted: str):
    value = recipe
    for part in dotted.split("."):
        value = getattr(value, part)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def stage_hash(recipe: Recipe, stage: str, upstream: dict[str, str]) -> str:
    """The hash of `stage`'s own section, the recipe fields it reads and the hashes of the stages it
    reads (`upstream`: stage -> hash, for the stages before it in the run)."""
    fields, reads = STAGE_READS[stage]
    section = getattr(recipe, stage) if stage != "report" else None
    payload = {
        "config": section.model_dump(mode="json") if section is not None else None,
        "reads": {name: _recipe_field(recipe, name) for name in fields},
        "upstream": {name: upstream[name] for name in reads if name in upstream},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def stage_digests(recipe: Recipe) -> list[tuple[str, str]]:
    """(stage, config hash) in run order; each hash covers the stages it reads (STAGE_READS)."""
    digests: dict[str, str] = {}
    for stage in recipe.stages:
        digests[stage] = stage_hash(recipe, stage, digests)
    return list(digests.items())


def read_manifest(stage_dir: Path) -> dict | None:
    path = stage_dir / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


class Pipeline:
    def __init__(self, recipe: Recipe, log: Callable[[str], None] = print):
        self.recipe = recipe
        self.run_dir = recipe.run_dir
        self.log = log

    # ------------------------------------------------------------ stages

    def stage_world(self, stage_dir: Path) -> dict:
        from xllava.world import build_world

        return build_world(stage_dir, self.recipe.world)

    def stage_tower(self, stage_dir: Path) -> dict:
        from xllava.train.tower import pretrain_tower

        return pretrain_tower(
            self.recipe.model.vision, self.recipe.tower, self.run_dir / "world", stage_dir, self.recipe.world
        )

    def stage_datagen(self, stage_dir: Path) -> dict:
        from xllava.datagen import run_datagen_stage

        return run_datagen_stage(self.recipe.datagen, self.run_dir / "world", stage_dir)

    def stage_vocab(self, stage_dir: Path) -> dict:
        from xllava.vocab import render_markdown, run_vocab_stage

        llm_dir = materialise_llm(self.recipe.model.llm, self.run_dir / "base" / "llm", self._world_texts())
        figures = run_vocab_stage(self.recipe.vocab, llm_dir, stage_dir, root=self.run_dir)
        (stage_dir / "vocab.md").write_text(render_markdown(figures), encoding="utf-8")
        return figures

    def stage_lm(self, stage_dir: Path) -> dict:
        from xllava.lm import run_lm_stage

        return run_lm_stage(self.recipe.lm, self.llm_dir(before="lm"), stage_dir, root=self.run_dir)

    def llm_dir(self, before: str | None = None) -> Path:
        """The LLM that LLaVA is assembled from: the lm stage's output, else the vocab stage's, else
        the base; with `before`, only stages ahead of that one count."""
        stages = self.recipe.stages
        ahead = stages[: stages.index(before)] if before in stages else stages
        for stage in ("lm", "vocab"):
            if stage in ahead:
                return self.run_dir / stage / "model"
        return materialise_llm(self.recipe.model.llm, self.run_dir / "base" / "llm", self._world_texts())

    def tower_source(self) -> str:
        if "tower" in self.recipe.stages:
            return "pretrained by the tower stage on the world's scene graphs"
        if self.recipe.model.vision.path:
            return f"pretrained ({self.recipe.model.vision.path})"
        return "randomly initialised"

    def base_model_dir(self) -> Path:
        """The freshly assembled LLaVA (LLM + tower + new projector) that stage 1 starts from."""
        init = self.run_dir / "base" / "llava"
        # the assembly depends on the model config and on the stages that feed it (vocab, tower)
        made_from = {
            "model": self.recipe.model.model_dump(mode="json"),
            "inputs": {s: (read_manifest(self.run_dir / s) or {}).get("config_hash") for s in ("vocab", "lm", "tower")},
        }
        stamp = init / "xllava_assembly.json"
        if not stamp_matches(stamp, made_from):
            model_cfg = self.recipe.model
            if "tower" in self.recipe.stages:
                vision = model_cfg.vision.model_copy(update={"path": str(self.run_dir / "tower" / "model")})
                model_cfg = model_cfg.model_copy(update={"vision": vision})
            built = assemble(model_cfg, self.llm_dir())
            save_llava(built.model, built.processor, init)
            write_stamp(stamp, made_from)
        return init

    def _world_texts(self):
        """Every text of the training files, for a from-scratch tokenizer (never the benchmark)."""
        languages = self.recipe.model.llm.scratch.tokenizer_languages
        for rel in [*self.recipe.align.data, *self.recipe.instruct.data]:
            path = self.run_dir / rel
            if not path.exists():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else {}
                if languages is None or record.get("lang") in languages:
                    for turn in record.get("conversations", []):
                        yield turn.get("value", "").replace("<image>", "")

    def stage_train(self, name: str, stage_dir: Path) -> dict:
        from xllava.train.stage import train_stage

        cfg = getattr(self.recipe, name)
        init = self.base_model_dir() if name == "align" else self.trained_model_dir(before=name)
        result = train_stage(cfg, init, stage_dir, self.run_dir, name)
        losses = [h["loss"] for h in result.log_history if "loss" in h]
        return {
            "model_dir": str(result.model_dir),
            "init_dir": str(init),
            "trained": result.trained,
            "vision_tower": self.tower_source(),
            "samples": result.samples,
            "supervised_tokens": result.supervised_tokens,
            "truncated_turns": result.truncated_turns,
            "fused_lora_projections": result.fused_lora,
            "seconds": round(result.seconds, 1),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
        }

    def trained_model_dir(self, before: str | None = None) -> Path:
        order = [s for s in ("instruct", "align") if s in self.recipe.stages]
        if before is not None:
            order = order[order.index(before) + 1 :] if before in order else order
        for stage in order:
            model_dir = self.run_dir / stage / "model"
            if (model_dir / "config.json").exists():
                return model_dir
        if before == "align" or not order:
            return self.base_model_dir()
        raise FileNotFoundError(f"no trained model before stage {before!r} in {self.run_dir}")

    def stage_eval(self, stage_dir: Path) -> dict:
        from xllava.eval.world_bench import evaluate

        model_dir = self.trained_model_dir()
        scores = evaluate(self.recipe.eval, model_dir, self.run_dir / self.recipe.eval.benchmark, stage_dir)
        figures = {"model_dir": str(model_dir), "scores": scores}
        if self.recipe.eval.suite is not None:
            from xllava.eval.suite import run_eval_suite

            suite = run_eval_suite(self.recipe.eval.suite, model_dir, self.run_dir / "world", stage_dir / "suite")
            figures["suite"] = {b: {lang: r["score"] for lang, r in v.items()} for b, v in suite["benchmarks"].items()}
        return figures

    def stage_report(self, stage_dir: Path) -> dict:
        from xllava.report import write_report

        path = write_report(self.recipe, self.run_dir, stage_dir)
        return {"report": str(path)}

    # ------------------------------------------------------------ driver

    def run(self, only: list[str] | None = None, force: bool = False) -> dict[str, dict]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(self.recipe, self.run_dir / "recipe.resolved.yaml")
        results: dict[str, dict] = {}
        for stage, digest in stage_digests(self.recipe):
            stage_dir = self.run_dir / stage
            manifest = read_manifest(stage_dir)
            wanted = only is None or stage in only
            if manifest and manifest.get("config_hash") == digest and not (force and wanted):
                self.log(f"[xllava] {stage}: complete, skipped ({stage_dir})")
                results[stage] = manifest
                continue
            if not wanted:
                raise RuntimeError(f"stage {stage} is not complete; run it first (or drop --only)")
            if manifest:  # finished, but with another config (or --force): start it afresh
                self.log(f"[xllava] {stage}: config changed, redoing")
                shutil.rmtree(stage_dir)
            elif stage_dir.exists() and stage in ("align", "instruct"):  # checkpoints to resume from
                self.log(f"[xllava] {stage}: resuming from {stage_dir}")
            stage_dir.mkdir(parents=True, exist_ok=True)
            self.log(f"[xllava] {stage}: running")
            started = time.time()
            if stage in ("align", "instruct"):
                figures = self.stage_train(stage, stage_dir)
            else:
                figures = getattr(self, f"stage_{stage}")(stage_dir)
            manifest = {
                "stage": stage,
                "config_hash": digest,
                "code_version": code_version(),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "seconds": round(time.time() - started, 1),
                "inputs": self._inputs(stage),
                "figures": figures,
            }
            section = getattr(self.recipe, stage, None)
            if section is not None and hasattr(section, "model_dump"):
                dump_config(section, stage_dir / "config.resolved.yaml")
            (stage_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
            results[stage] = manifest
        return results

    def _inputs(self, stage: str) -> dict[str, str]:
        cfg = getattr(self.recipe, stage, None)
        files = [self.run_dir / p for p in getattr(cfg, "data", [])]
        return {str(p.relative_to(self.run_dir)): file_digest(p) for p in files if p.is_file()}
