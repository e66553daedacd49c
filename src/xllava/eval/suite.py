"""The evaluation suite: every benchmark type, in every language, on the world's instances.

`run_eval_suite(cfg, model_dir, world_dir, out_dir)` writes the world's benchmark in each public
format (world_formats.py), reads it back through the public-format loaders, generates greedy answers
(resumable predictions JSONL per benchmark and language), scores each by its protocol, has the judge
review LLaVA-Bench answers, and, for each opponent model, runs pairwise preference at full length
and with the 30-word limit. Everything lands in out_dir/suite_scores.json (returned too):

  {model, model_name, languages, judge: {model, endpoint},
   benchmarks: {name: {lang: score dict with protocol}},
   preference: {opponent: {variant: {lang: win/tie/lose dict}}}}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import zip_longest
from pathlib import Path

from xllava.eval import judge as J
from xllava.eval.generate import ONE_SENTENCE, generate_predictions, model_fingerprint
from xllava.eval.items import EvalItem
from xllava.eval.language import language_rate
from xllava.eval.loaders import (
    load_gqa,
    load_llava_bench,
    load_llava_questions,
    load_mmbench_tsv,
    load_pope,
    load_vqav2,
)
from xllava.eval.mmbench import score_mmbench
from xllava.eval.scorers import score_contains, score_exact_ko, score_gqa, score_pope, score_vqav2
from xllava.eval.suite_config import EvalSuiteConfig
from xllava.eval.world_formats import write_world_benchmarks
from xllava.world.lexicon import SHORT_ANSWER_INSTRUCTION


def model_name(model_dir: Path) -> str:
    """run/instruct/model -> instruct; any other directory -> its own name."""
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


def _limit(items: list[EvalItem], n: int | None, circular: bool = False) -> list[EvalItem]:
    """The first n questions, taken in turn from each category (the files are sorted by category, so
    a plain prefix would test one question type). MMBench: n questions with all their rotations."""
    if not n:
        return items
    key = (lambda it: it.extra["g_index"]) if circular else (lambda it: it.question_id)
    by_category: dict[str, list] = {}
    for it in items:
        bucket = by_category.setdefault(it.category, [])
        if key(it) not in bucket:
            bucket.append(key(it))
    chosen: list = []
    for row in zip_longest(*by_category.values()):
        chosen += [k for k in row if k is not None]
    keep = set(chosen[:n])
    return [it for it in items if key(it) in keep]


def load_world_items(benchmark: str, lang: str, files: dict, out_dir: Path, post_prompt: str | None) -> list[EvalItem]:
    """Read one world benchmark back through its public-format loader."""
    images = Path(files["images"])
    f = files.get(benchmark, {}).get(lang, {})
    if benchmark == "short":
        return load_llava_questions(Path(f["questions"]), Path(f["image_folder"]), lang)
    if benchmark == "vqav2":
        return load_vqav2(Path(f["questions"]), Path(f["annotations"]), images, lang, post_prompt)
    if benchmark == "gqa":
        return load_gqa(Path(f["questions"]), images, lang, post_prompt)
    if benchmark == "pope":
        return load_pope(Path(f["questions"]), images, lang, post_prompt)
    if benchmark == "mmbench":
        return load_mmbench_tsv(Path(f["tsv"]), out_dir / "images" / f"mmbench-{lang}", lang)
    if benchmark in ("llava_bench", "preference"):
        lb = files["llava_bench"][lang]
        return load_llava_bench(Path(lb["questions"]), Path(lb["context"]), Path(lb["answers_gpt4"]), images, lang)
    raise ValueError(f"unknown benchmark {benchmark!r}")


def score_benchmark(benchmark: str, lang: str, pairs: list[tuple[EvalItem, str]]) -> dict:
    if benchmark == "short":  # the paper: Korean exact match (네/예/yes alike), BVQA-en containment
        return score_exact_ko(pairs) if lang == "ko" else score_contains(pairs)
    return {"vqav2": score_vqav2, "gqa": score_gqa, "pope": score_pope, "mmbench": score_mmbench}[benchmark](pairs)


@contextmanager
def judge_endpoint(cfg: J.JudgeConfig, world_dir: Path) -> Iterator[tuple[J.OpenAI, J.JudgeConfig, str]]:
    """The configured endpoint, or the world judge served on loopback for the length of the block."""
    if cfg.base_url:
        yield J.make_client(cfg), cfg, cfg.base_url
        return
    from xllava.datagen.openai_server import ServerThread, create_app
    from xllava.eval.world_judge import MODEL_NAME, WorldJudge

    world_cfg = cfg.model_copy(update={"model": MODEL_NAME})
    with ServerThread(create_app(WorldJudge(world_dir), model_ids=(MODEL_NAME,))) as server:
        yield J.make_client(world_cfg, server.base_url), world_cfg, "built-in world judge (loopback)"


class _Generator:
    """One loaded model and where its predictions go."""

    def __init__(self, model_dir: Path, name: str, cfg: EvalSuiteConfig, out_dir: Path):
        from xllava.model.assemble import load_llava

        self.model, self.processor = load_llava(model_dir)
        self.fingerprint = model_fingerprint(model_dir)
        self.name, self.cfg, self.out_dir = name, cfg, out_dir
        self.memo: dict[tuple, str] = {}  # the same question in two formats is generated once

    def answers(self, items: list[EvalItem], tag: str, max_new_tokens: int, word_limit: int | None = None) -> dict:
        rows = generate_predictions(
            self.model, self.processor, items, self.out_dir / "predictions" / self.name / f"{tag}.jsonl",
            model_id=self.name, fingerprint=self.fingerprint, batch_size=self.cfg.batch_size,
            max_new_tokens=max_new_tokens, image_first=self.cfg.image_first, word_limit=word_limit,
            desc=f"{self.name} {tag}", memo=self.memo)
        return {qid: row["text"] for qid, row in rows.items()}


def _word_limited(items: list[EvalItem], limit: int | None) -> list[EvalItem]:
    if not limit:
        return items
    return [EvalItem(it.question_id, it.image, it.question, f"{it.prompt} {ONE_SENTENCE.get(it.lang, '')}".strip(),
                     it.lang, it.answers, it.category, it.extra) for it in items]


def run_eval_suite(cfg: EvalSuiteConfig, model_dir: Path, world_dir: Path, out_dir: Path) -> dict:
    model_dir, world_dir, out_dir = Path(model_dir), Path(world_dir), Path(out_dir)
    files = write_world_benchmarks(world_dir, out_dir / "benchmarks", cfg.languages)
    candidate = _Generator(model_dir, model_name(model_dir), cfg, out_dir)
    results: dict = {"model": str(model_dir), "model_name": candidate.name, "languages": cfg.languages,
                     "dataset": "xllava world (held-out scenes)", "benchmarks": {}, "preference": {}}
    bench_items: dict[str, dict[str, list[EvalItem]]] = {}
    for benchmark in cfg.benchmarks:
        bench_items[benchmark] = {}
        for lang in cfg.languages:
            post = SHORT_ANSWER_INSTRUCTION.get(lang) if cfg.short_post_prompt == "world" else "default"
            items = load_world_items(benchmark, lang, files, out_dir, post)
            bench_items[benchmark][lang] = _limit(items, cfg.limit, circular=benchmark == "mmbench")

    with judge_endpoint(cfg.judge, world_dir) as (client, judge_cfg, endpoint):
        results["judge"] = {"model": judge_cfg.model, "endpoint": endpoint}
        for benchmark in cfg.benchmarks:
            if benchmark == "preference":
                continue
            results["benchmarks"][benchmark] = {}
            for lang, items in bench_items[benchmark].items():
                long = benchmark == "llava_bench"
                answers = candidate.answers(items, f"{benchmark}_{lang}",
                                            cfg.long_max_new_tokens if long else cfg.max_new_tokens)
                if long:
                    score = J.review(items, answers, client, judge_cfg,
                                     out_dir / "judgements" / f"llava_bench_{lang}.jsonl", lang)
                    score["language_rate"] = language_rate((it.lang, answers[it.question_id]) for it in items)
                else:
                    score = score_benchmark(benchmark, lang, [(it, answers[it.question_id]) for it in items])
                results["benchmarks"][benchmark][lang] = {**score, "dataset": "world"}
        if "preference" in cfg.benchmarks and cfg.opponents:
            results["preference"] = _preference(cfg, candidate, bench_items["preference"], world_dir, out_dir,
                                                client, judge_cfg)
    (out_dir / "suite_scores.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    return results


def _preference(cfg: EvalSuiteConfig, candidate: _Generator, items_by_lang: dict[str, list[EvalItem]],
                world_dir: Path, out_dir: Path, client: J.OpenAI, judge_cfg: J.JudgeConfig) -> dict:
    out: dict = {}
    for name, path in cfg.opponents.items():
        opponent_dir = Path(path) if Path(path).is_absolute() else world_dir.parent / path
        if not (opponent_dir / "config.json").exists():
            raise FileNotFoundError(f"preference opponent {name!r}: no model at {opponent_dir}")
        opponent = _Generator(opponent_dir, name, cfg, out_dir)
        out[name] = {}
        for limit in cfg.preference_word_limits:
            variant = f"{limit}_words" if limit else "full"
            out[name][variant] = {}
            for lang, base in items_by_lang.items():
                items = _word_limited(base, limit)
                # full length: the same prompts as LLaVA-Bench, so the candidate's answers are reused
                tag = f"preference_{lang}_{variant}" if limit else f"llava_bench_{lang}"
                mine = candidate.answers(items, tag, cfg.long_max_new_tokens, limit)
                theirs = opponent.answers(items, tag, cfg.long_max_new_tokens, limit)
                path_out = out_dir / "judgements" / f"pairwise_{name}_{lang}_{variant}.jsonl"
                out[name][variant][lang] = J.pairwise(items, mine, theirs, client, judge_cfg, path_out, lang)
        del opponent
    return out
