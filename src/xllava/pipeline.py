"""`xllava run RECIPE`: the stages in order, skipping completed ones, resuming an interrupted one.

A stage is complete when its directory holds `manifest.json` whose config hash matches: the hash
covers the stage's own config, the recipe fields it reads and the hashes of the stages whose outputs
it reads (STAGE_READS), so changing the world redoes everything after it, and changing the LLM
redoes everything but the world, the generated data and the tower. A stage without a manifest is
resumed (training restarts from its last complete checkpoint). Each stage directory also holds the
resolved config that made it.

Before any stage runs, every input the recipe names is checked (xllava.preflight): all missing
files, malformed data, unreachable endpoints and missing keys are reported at once.

This is the one module that wires the embedded world in: the `world` and `tower` stages, and the
teacher and judge a recipe names as `base_url: world`, which the pipeline serves on loopback from
the world stage's output and hands to `datagen` and `eval` like any other endpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from xllava.config import Recipe, dump_config
from xllava.config import load_recipe as read_recipe
from xllava.io import stamp_matches, write_stamp
from xllava.model.assemble import assemble, save_llava
from xllava.model.llm_sources import materialise_llm
from xllava.preflight import WORLD_URL, InputError, check_inputs
from xllava.stagedir import promote, recover, relocated, replacement_dir

MANIFEST = "manifest.json"
TRAINING_STAGES = ("align", "instruct")


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
    "tower": (("model.vision", "world"), ("world",)),
    "align": (("model",), ("world", "datagen", "vocab", "lm", "tower")),
    "instruct": (("model",), ("world", "datagen", "vocab", "lm", "tower", "align")),
    "eval": ((), ("world", "datagen", "vocab", "lm", "tower", "align", "instruct")),
    "report": ((), ("world", "datagen", "vocab", "lm", "tower", "align", "instruct", "eval")),
}


# ---------------------------------------------------------------- the world's part of the stage table


def world_sections(recipe: Recipe):
    """The recipe's `world` and `tower` sections, validated by the world's own configs."""
    from xllava.world.config import TowerConfig, WorldConfig

    return WorldConfig.model_validate(recipe.world), TowerConfig.model_validate(recipe.tower)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """xllava.config.load_recipe, with the world's sections validated too (errors name the file)."""
    recipe = read_recipe(path, overrides)
    if not (recipe.world or recipe.tower or {"world", "tower"} & set(recipe.stages)):
        return recipe  # a recipe without the sandbox never loads it
    try:
        world_sections(recipe)
    except Exception as err:
        raise ValueError(f"{path}: world or tower section: {err}") from err
    return recipe


WORLD_TEACHER_ENDPOINT = "xllava-world-teacher"  # the store's key for it (its port changes per run)


@contextmanager
def world_teacher(recipe: Recipe) -> Iterator[str]:
    """The world teacher in a child process (its own core) on loopback, for the block."""
    from xllava.datagen.openai_server import FaultConfig
    from xllava.world.teacher import world_teacher_process

    world, _ = world_sections(recipe)
    server = world_teacher_process(recipe.run_dir / "world", FaultConfig(latency_s=world.teacher_latency_s)).start()
    try:
        yield server.base_url
    finally:
        server.stop()


@contextmanager
def world_judge(recipe: Recipe) -> Iterator[tuple[str, str]]:
    """(base_url, model) of the world judge served in a thread on loopback, for the block."""
    from xllava.datagen.openai_server import ServerThread, create_app
    from xllava.world.judge import MODEL_NAME, WorldJudge

    with ServerThread(create_app(WorldJudge(recipe.run_dir / "world"), model_ids=(MODEL_NAME,))) as server:
        yield server.base_url, MODEL_NAME


def _section_dump(recipe: Recipe, stage: str) -> dict | None:
    if stage in ("world", "tower"):
        world, tower = world_sections(recipe)
        return (world if stage == "world" else tower).model_dump(mode="json")
    section = getattr(recipe, stage, None)
    return section.model_dump(mode="json") if section is not None else None


def _recipe_field(recipe: Recipe, dotted: str):
    value = recipe.model_dump(mode="json")
    for part in dotted.split("."):
        value = value[part]
    return value


def stage_hash(recipe: Recipe, stage: str, upstream: dict[str, str]) -> str:
    """The hash of `stage`'s own section, the recipe fields it reads and the hashes of the stages it
    reads (`upstream`: stage -> hash, for the stages before it in the run)."""
    fields, reads = STAGE_READS[stage]
    payload = {
        "config": _section_dump(recipe, stage),
        "reads": {name: _recipe_field(recipe, name) for name in fields},
        "upstream": {name: upstream[name] for name in reads if name in upstream},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def stage_context(recipe: Recipe, stage: str) -> dict:
    """What a stage starts from besides its own section: the recipe fields it reads and the hashes of
    the stages it reads (a training checkpoint records it, so a redone upstream stage is noticed)."""
    fields, reads = STAGE_READS[stage]
    digests = dict(stage_digests(recipe))
    return {"reads": {name: _recipe_field(recipe, name) for name in fields},
            "upstream": {name: digests[name] for name in reads if name in digests}}


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
        from xllava.world.build import build_world

        return build_world(stage_dir, world_sections(self.recipe)[0])

    def stage_tower(self, stage_dir: Path) -> dict:
        from xllava.world.tower import pretrain_tower

        world, tower = world_sections(self.recipe)
        return pretrain_tower(self.recipe.model.vision, tower, self.run_dir / "world", stage_dir, world)

    def stage_datagen(self, stage_dir: Path) -> dict:
        from xllava.datagen.config import ModelPrice
        from xllava.datagen.stage import run_datagen_stage

        cfg = self.recipe.datagen
        image_root = self.run_dir / str(cfg.images)
        if cfg.teacher.base_url != WORLD_URL:
            return run_datagen_stage(cfg, image_root, stage_dir, str(cfg.teacher.base_url))
        free = {**cfg.prices, cfg.teacher.model: ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0)}
        with world_teacher(self.recipe) as base_url:
            return run_datagen_stage(cfg.model_copy(update={"prices": free}), image_root, stage_dir, base_url,
                                     endpoint_id=WORLD_TEACHER_ENDPOINT)

    def stage_vocab(self, stage_dir: Path) -> dict:
        from xllava.vocab import render_markdown, run_vocab_stage

        llm_dir = materialise_llm(self.recipe.model.llm, self.run_dir / "base" / "llm", self._training_texts())
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
        return materialise_llm(self.recipe.model.llm, self.run_dir / "base" / "llm", self._training_texts())

    def tower_source(self) -> str:
        if "tower" in self.recipe.stages:
            return "pretrained by the world's tower stage on its scene graphs"
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

    def _training_texts(self):
        """Every text of the training files, for a from-scratch tokenizer (never the benchmark)."""
        from xllava.train.data import expand_data_path, read_data_records

        languages = self.recipe.model.llm.scratch.tokenizer_languages
        for source in [*self.recipe.align.sources(), *self.recipe.instruct.sources()]:
            for path in expand_data_path(self.run_dir / source.path):
                for _, record in read_data_records(path):
                    if languages is None or record.get("lang") in languages:
                        for turn in record.get("conversations", []):
                            yield turn.get("value", "").replace("<image>", "")

    def stage_train(self, name: str, stage_dir: Path) -> dict:
        from xllava.train.stage import train_stage

        cfg = getattr(self.recipe, name)
        init = self.base_model_dir() if name == "align" else self.trained_model_dir(before=name)
        result = train_stage(cfg, init, stage_dir, self.run_dir, name, stage_context(self.recipe, name))
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
            "padding_free": result.padding_free,
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
        from xllava.eval.stage import run_eval_stage

        cfg, model_dir = self.recipe.eval, self.trained_model_dir()
        if cfg.judge.base_url == WORLD_URL and cfg.needs_judge():
            with world_judge(self.recipe) as (base_url, model):
                judge = cfg.judge.model_copy(update={"base_url": base_url, "model": model, "api_key_env": None})
                results = run_eval_stage(cfg, model_dir, self.run_dir, stage_dir, judge,
                                         "the world judge (loopback)")
        else:
            results = run_eval_stage(cfg, model_dir, self.run_dir, stage_dir)
        headline = results["headline"]
        return {"model_dir": str(model_dir), "headline": headline,
                "scores": results["benchmarks"].get(headline, {}) if headline else {},
                "suite": {b: {lang: r.get("score") for lang, r in v.items()} for b, v in results["benchmarks"].items()}}

    def stage_report(self, stage_dir: Path) -> dict:
        from xllava.report import write_report

        path = write_report(self.recipe, self.run_dir, stage_dir)
        return {"report": str(path)}

    # ------------------------------------------------------------ driver

    def pending(self, only: list[str] | None = None, force: bool = False) -> list[str]:
        """The stages this run will execute: not complete with the current config, or forced."""
        out = []
        for stage, digest in stage_digests(self.recipe):
            manifest = read_manifest(self.run_dir / stage)
            wanted = only is None or stage in only
            if wanted and (force or not manifest or manifest.get("config_hash") != digest):
                out.append(stage)
        return out

    def run(self, only: list[str] | None = None, force: bool = False) -> dict[str, dict]:
        # only the stages that will run have their inputs checked: a finished datagen stage needs
        # neither its teacher nor its key again
        unknown = [s for s in only or [] if s not in self.recipe.stages]
        if unknown:
            raise InputError([f"stages: {', '.join(unknown)} asked for, but the recipe's stages are {self.recipe.stages}"])
        problems = check_inputs(self.recipe, self.pending(only, force))
        if problems:
            raise InputError(problems)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(self.recipe, self.run_dir / "recipe.resolved.yaml")
        results: dict[str, dict] = {}
        digests = stage_digests(self.recipe)
        if only is not None:  # the stages after the last one asked for are not this run's business
            names = [stage for stage, _ in digests]
            digests = digests[: max(names.index(s) + 1 for s in only)]
        for stage, digest in digests:
            stage_dir = self.run_dir / stage
            recover(stage_dir)
            manifest = read_manifest(stage_dir)
            wanted = only is None or stage in only
            if manifest and manifest.get("config_hash") == digest and not (force and wanted):
                self.log(f"[xllava] {stage}: complete, skipped ({stage_dir})")
                results[stage] = manifest
                continue
            if not wanted:
                raise RuntimeError(f"stage {stage} is not complete; run it first (or drop --only)")
            work_dir = stage_dir
            if stage in TRAINING_STAGES and (manifest or (force and wanted)):
                # a redo trains beside the finished stage, which it replaces only once complete
                work_dir = replacement_dir(stage_dir)
                if force and wanted and work_dir.exists():
                    shutil.rmtree(work_dir)  # --force: start over, no checkpoint of an earlier try
                self.log(f"[xllava] {stage}: {'forced' if force and wanted else 'config changed'}, redoing in "
                         f"{work_dir} (the current {stage} stays until it completes)")
            elif manifest:  # finished, but with another config (or --force): start it afresh
                self.log(f"[xllava] {stage}: config changed, redoing")
                self._clear(stage, stage_dir)
            elif stage_dir.exists() and stage in TRAINING_STAGES:  # checkpoints to resume from
                self.log(f"[xllava] {stage}: resuming from {stage_dir}")
            work_dir.mkdir(parents=True, exist_ok=True)
            self.log(f"[xllava] {stage}: running")
            started = time.time()
            if stage in TRAINING_STAGES:
                figures = relocated(self.stage_train(stage, work_dir), str(work_dir), str(stage_dir))
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
            section = _section_dump(self.recipe, stage)
            if section is not None:
                (work_dir / "config.resolved.yaml").write_text(
                    yaml.safe_dump(section, sort_keys=False, allow_unicode=True), encoding="utf-8")
            (work_dir / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
            if work_dir != stage_dir:
                promote(work_dir, stage_dir)
            results[stage] = manifest
        return results

    def _clear(self, stage: str, stage_dir: Path) -> None:
        """Empty a stage directory before it is redone, except the teacher's store: its answers were
        paid for, and the generator asks again only for requests whose parameters changed."""
        keep = {self.recipe.datagen.store} if stage == "datagen" else set()
        for path in stage_dir.iterdir():
            if path.name in keep:
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    def _inputs(self, stage: str) -> dict[str, str]:
        """Digest of each training data file the stage read (by its path as the recipe resolves it)."""
        from xllava.train.data import expand_data_path

        if stage not in ("align", "instruct"):
            return {}
        files = [f for s in getattr(self.recipe, stage).sources() for f in expand_data_path(self.run_dir / s.path)]
        return {str(f.relative_to(self.run_dir) if f.is_relative_to(self.run_dir) else f): file_digest(f) for f in files}
