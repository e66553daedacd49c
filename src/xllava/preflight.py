"""Every input a recipe names, checked before any stage runs: files and folders exist, training data
parses as LLaVA records, endpoints answer, their keys are set. All problems are reported at once,
each with the recipe field that names the input and its path or URL, so a run never fails hours in
on something a second of checking would have found, and nothing already produced is touched.

A path under the run directory that a stage of this run writes (`world/...`, `datagen/...`, `align/model`)
is not checked: it does not exist yet.
"""

from __future__ import annotations

import itertools
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

from xllava.config import Recipe
from xllava.train.data import DataError, expand_data_path, parse_record, read_data_records

# a teacher or judge `base_url` that names the embedded world's endpoint, served by the pipeline
WORLD_URL = "world"
SNIFF_RECORDS = 5  # records parsed per training file (format, fields, image paths)


class InputError(ValueError):
    """Problems with a recipe's inputs, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) with the recipe's inputs; nothing was run:\n{listed}")


class _Checker:
    def __init__(self, recipe: Recipe, stages: list[str]):
        self.recipe, self.stages = recipe, stages
        self.run_dir = recipe.run_dir.absolute()
        self.problems: list[str] = []

    def resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.run_dir / path

    def produced(self, path: Path, before: str) -> bool:
        """Written by a stage of this run that comes before `before`."""
        try:
            first = path.absolute().relative_to(self.run_dir).parts[0]
        except (ValueError, IndexError):
            return False
        order = self.recipe.stages
        return first in order and before in order and order.index(first) < order.index(before)

    def path(self, field: str, value: str | None, stage: str, kind: Literal["file", "dir"]) -> Path | None:
        """The path when it is there; None when unset, written by an earlier stage, or missing (reported)."""
        if value is None:
            return None
        path = self.resolve(value)
        if self.produced(path, stage):
            return None
        if path.is_dir() if kind == "dir" else path.is_file():
            return path
        self.problems.append(f"{field}: {'folder' if kind == 'dir' else 'file'} {path} does not exist")
        return None

    def endpoint(self, field: str, base_url: str | None, key_env: str | None, stage: str) -> None:
        if base_url is None:
            self.problems.append(f"{field}.base_url: not set (an OpenAI-compatible endpoint, e.g. "
                                 "https://api.openai.com/v1)")
            return
        if base_url == WORLD_URL:
            if "world" not in self.recipe.stages or self.recipe.stages.index("world") > self.recipe.stages.index(stage):
                self.problems.append(f"{field}.base_url: 'world' names the embedded world's endpoint, but no "
                                     f"world stage runs before {stage}")
            return
        if key_env and not os.environ.get(key_env):
            self.problems.append(f"{field}.api_key_env: environment variable {key_env} is not set (the key for "
                                 f"{base_url}; set api_key_env: null for an endpoint without keys)")
        try:  # any HTTP answer (401 and 404 included) means a server is there
            urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=10.0).close()
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            self.problems.append(f"{field}.base_url: {base_url} is unreachable ({reason})")

    def training_data(self, stage: str) -> None:
        cfg = getattr(self.recipe, stage)
        if not cfg.data:
            self.problems.append(f"{stage}.data: no training data files named")
        for i, source in enumerate(cfg.sources()):
            field = f"{stage}.data[{i}]"
            pattern = self.resolve(source.path)
            root = self.path(f"{field}.image_root", source.image_root, stage, "dir") if source.image_root else None
            if self.produced(pattern, stage):
                continue
            files = expand_data_path(pattern)
            if not files:
                self.problems.append(f"{field}: {pattern} does not exist" + (" (the glob matches no file)"
                                     if any(c in source.path for c in "*?[") else ""))
            if source.image_root and root is None:
                continue  # the missing image folder is reported; records cannot be checked against it
            for path in files:
                self.sniff(field, path, root or path.parent)

    def sniff(self, field: str, path: Path, image_root: Path) -> None:
        """Parse the first records: a wrong format stops the run now, not when the stage starts."""
        try:
            records = read_data_records(path)
            found: dict[str, Path] = {}
            for line, record in records[:SNIFF_RECORDS]:
                parse_record(record, path, line, image_root, found)
        except DataError as err:
            self.problems.append(f"{field}: {err}")
        except UnicodeDecodeError as err:
            self.problems.append(f"{field}: {path}: not UTF-8 text ({err.reason} at byte {err.start})")


def check_inputs(recipe: Recipe, only: list[str] | None = None) -> list[str]:
    """The problems with the inputs of the stages that will run (all of them, or `only`)."""
    stages = [s for s in recipe.stages if only is None or s in only]
    c = _Checker(recipe, stages)
    llm, vision = recipe.model.llm, recipe.model.vision
    model_stages = [s for s in ("vocab", "lm", "align") if s in stages]
    if model_stages and llm.source == "hf" and llm.path:
        c.path("model.llm.path", llm.path, model_stages[0], "dir")
    if "align" in stages and vision.path and "tower" not in recipe.stages:
        c.path("model.vision.path", vision.path, "align", "dir")
    if "vocab" in stages:
        v = recipe.vocab
        if v.corpus != "libreoffice":
            c.path("vocab.corpus", v.corpus, "vocab", "file")
        c.path("vocab.pieces_file", v.pieces_file, "vocab", "file")
    if "lm" in stages:
        for i, source in enumerate(recipe.lm.sources):
            c.path(f"lm.sources[{i}].path", source.path, "lm", "file")
    if "datagen" in stages:
        d = recipe.datagen
        if d.images is None:
            c.problems.append("datagen.images: not set (a folder of images with Visual Genome objects.json)")
        else:
            root = c.path("datagen.images", d.images, "datagen", "dir")
            if root is not None:
                c.path("datagen.selection.objects_file", str(root / d.selection.objects_file), "datagen", "file")
                if d.selection.image_ids_file:
                    c.path("datagen.selection.image_ids_file", str(root / d.selection.image_ids_file), "datagen",
                           "file")
        c.endpoint("datagen.teacher", d.teacher.base_url, d.teacher.api_key_env, "datagen")
    for stage in ("align", "instruct"):
        if stage in stages:
            c.training_data(stage)
            c.problems += _device_problems(getattr(recipe, stage), stage)
    if "eval" in stages:
        _check_eval(c, recipe)
    return c.problems


def _device_problems(cfg, stage: str) -> list[str]:
    """`device: cuda` without CUDA, flash_attention_2 without its package: found before any stage runs."""
    from xllava.train.precision import DeviceUnavailable, check_attention, use_accelerator

    problems = []
    for check in (lambda: use_accelerator(cfg.device, f"{stage}.device"),
                  lambda: check_attention(cfg.llm_attention, f"{stage}.llm_attention")):
        try:
            check()
        except DeviceUnavailable as error:
            problems.append(str(error))
    return problems


# the fields each benchmark file must hold (format, recipe field) -> required keys of a row
ROW_FIELDS = {
    ("llava", "questions"): ("question_id", "image", "text"),
    ("pope", "questions"): ("question_id", "image", "text", "label"),
    ("llava_bench", "questions"): ("question_id", "image", "text"),
    ("llava_bench", "context"): ("image",),
    ("llava_bench", "references"): ("question_id", "text"),
}


def sniff_benchmark(fmt: str, field: str, path: Path, labels_apart: bool = False) -> str | None:
    """The first rows of a benchmark file against its format's layout; None when they fit. The whole
    file is read by its loader when the eval stage starts (xllava.eval.loaders). JSONL and JSON-array
    files alike; a GQA or VQAv2 `.jsonl` is LLaVA's question file; `labels_apart`: POPE labels in an annotation
    folder (LLaVA's layout), so the question rows carry none."""
    from xllava.eval.items import BenchmarkFormatError
    from xllava.eval.loaders import read_records

    rows_of = ROW_FIELDS.get((fmt, field))
    if fmt in ("gqa", "vqav2") and field == "questions" and path.suffix == ".jsonl":
        rows_of = ROW_FIELDS["llava", "questions"]
    if fmt == "pope" and labels_apart and rows_of:
        rows_of = tuple(k for k in rows_of if k != "label")
    try:
        if rows_of:
            for number, row in itertools.islice(read_records(path), SNIFF_RECORDS):
                missing = [k for k in rows_of if k not in row]
                if missing:
                    raise BenchmarkFormatError(path, number, missing[0], f"missing (a {fmt} {field} row has "
                                               f"{', '.join(rows_of)})")
        elif fmt in ("vqav2", "gqa") and field in ("questions", "annotations"):
            data = json.loads(path.read_text(encoding="utf-8"))
            if fmt == "vqav2" and not (isinstance(data, dict) and isinstance(data.get(field), list)):
                raise BenchmarkFormatError(path, None, field, f"expected an object with a {field!r} list")
            if fmt == "gqa" and not (isinstance(data, dict) and all(isinstance(v, dict) and "imageId" in v
                                                                    for v in itertools.islice(data.values(), 5))):
                raise BenchmarkFormatError(path, None, "imageId", "expected an object of questions keyed by id")
        elif fmt == "mmbench" and field == "questions":
            with path.open(encoding="utf-8") as f:
                header = f.readline().rstrip("\n").split("\t")
            missing = [k for k in ("index", "question", "A", "B") if k not in header]
            if missing or not {"image", "image_path"} & set(header):
                raise BenchmarkFormatError(path, "header", (missing or ["image"])[0], "missing column")
    except BenchmarkFormatError as err:
        return str(err)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return f"{path}: not {'JSON' if isinstance(err, json.JSONDecodeError) else 'UTF-8'} ({err})"
    return None


def _check_eval(c: _Checker, recipe: Recipe) -> None:
    cfg = recipe.eval
    if not cfg.selected():
        c.problems.append("eval.benchmarks: no benchmark listed")
    for i, spec in enumerate(cfg.benchmarks):
        if spec not in cfg.selected():
            continue
        for lang in spec.languages or [None]:
            for field, value in spec.paths().items():
                value = value.replace("{lang}", lang) if lang else value
                # POPE: the questions may be a folder of the official files, the labels of LLaVA's
                # question file are a folder of them
                folder = field == "images" or (spec.format == "pope" and (
                    field == "annotations" or (field == "questions" and not Path(value).suffix)))
                kind = "dir" if folder else "file"
                path = c.path(f"eval.benchmarks[{i}].{field}", value, "eval", kind)
                files = [path] if kind == "file" else []
                if path is not None and folder and field == "questions":  # POPE: each official file in it
                    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
                for file in files if path is not None else []:
                    problem = sniff_benchmark(spec.format, field, file, labels_apart=spec.annotations is not None)
                    if problem:
                        c.problems.append(f"eval.benchmarks[{i}].{field}: {problem}")
    if cfg.needs_judge():
        c.endpoint("eval.judge", cfg.judge.base_url, cfg.judge.api_key_env, "eval")
    if cfg.preference_on:
        for name, path in cfg.opponents.items():
            c.path(f"eval.opponents.{name}", path, "eval", "dir")
