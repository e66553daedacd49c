"""The `eval` stage: every benchmark a recipe lists, read from its published files, answered greedily,
scored by its protocol, judged where it needs a judge, plus pairwise preference against opponents.

Each benchmark is read through its public-format loader (xllava.eval.loaders), once per language when
it names `languages` (`{lang}` in its paths). Predictions are resumable JSONL per benchmark and
language. Everything lands in out_dir/suite_scores.json (returned too):

  {model, model_name, languages, headline, judge: {model, endpoint},
   benchmarks: {name: {lang: score dict with protocol and dataset}},
   preference: {opponent: {variant: {lang: win/tie/lose dict}}}}

The headline benchmark's scores also go to out_dir/scores.json, by language.
"""

from __future__ import annotations

import json
from itertools import zip_longest
from pathlib import Path

from xllava.datagen.prompts import SHORT_ANSWER_INSTRUCTION
from xllava.eval import exact_match
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
from xllava.eval.submission import write_submission
from xllava.eval.suite_config import BenchmarkSpec, EvalConfig

LLAVA_SHORT_PROMPT = "Answer the question using a single word or phrase."


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


def benchmark_files(spec: BenchmarkSpec, run_dir: Path) -> list[tuple[str | None, dict[str, Path]]]:
    """(language or None, recipe field -> path) for each file set the benchmark names."""
    out = []
    for lang in spec.languages or [None]:
        paths = {}
        for field, value in spec.paths().items():
            path = Path(value.replace("{lang}", lang) if lang else value)
            paths[field] = path if path.is_absolute() else run_dir / path
        out.append((lang, paths))
    return out


def post_prompt(spec: BenchmarkSpec, lang: str | None) -> str | None:
    """The text appended to each question, or "default" for the loader's own choice."""
    if spec.post_prompt == "short_answer":
        return SHORT_ANSWER_INSTRUCTION.get(lang or "en")
    if spec.post_prompt == "llava":
        return LLAVA_SHORT_PROMPT
    if spec.post_prompt == "none":
        return None
    return spec.post_prompt


def load_items(spec: BenchmarkSpec, lang: str | None, paths: dict[str, Path], out_dir: Path) -> list[EvalItem]:
    """Read one benchmark's files through its public-format loader."""
    questions = paths["questions"]
    default_images = questions.parent
    if spec.format == "llava_bench" and (questions.parent / "images").is_dir():
        default_images = questions.parent / "images"  # the published folder keeps them there
    images = paths.get("images", default_images)
    post = post_prompt(spec, lang)
    kwargs = {} if post == "default" else {"post_prompt": post}
    if spec.format == "llava":
        return load_llava_questions(questions, images, lang, **kwargs)
    if spec.format == "vqav2":
        return load_vqav2(questions, paths.get("annotations"), images, lang, **kwargs)
    if spec.format == "gqa":
        return load_gqa(questions, images, lang, annotations=paths.get("annotations"), **kwargs)
    if spec.format == "pope":
        return load_pope(questions, images, lang, annotations=paths.get("annotations"), **kwargs)
    if spec.format == "mmbench":
        return load_mmbench_tsv(questions, out_dir / "images" / f"{spec.key}-{lang or 'all'}", lang, **kwargs)
    return load_llava_bench(questions, paths["context"], paths["references"], images, lang)


def score_exact_match(pairs: list[tuple[EvalItem, str]]) -> dict:
    """Per-category exact match with majority baselines (xllava.eval.exact_match), mean over categories."""
    result = exact_match.score([{"category": it.category, "answer": it.answers[0] if it.answers else "",
                                 "prediction": answer} for it, answer in pairs])
    return {**result, "metric": "accuracy (mean over types)", "score": result["accuracy"],
            "language_rate": language_rate((it.lang, answer) for it, answer in pairs)}


MODE_SCORERS = {"vqav2": score_vqav2, "gqa": score_gqa, "pope": score_pope, "mmbench": score_mmbench}


def _brief(result: dict) -> dict:
    return {k: result[k] for k in ("score", "protocol", "per_type") if k in result}


def score_benchmark(spec: BenchmarkSpec, lang: str, pairs: list[tuple[EvalItem, str]]) -> dict:
    """The benchmark's score in the mode the spec names (official unless `extended`), with both modes'
    headline figures under `modes` so the report can show them side by side."""
    if spec.format == "llava":
        if spec.scoring == "exact_match":
            return score_exact_match(pairs)
        return score_exact_ko(pairs) if lang == "ko" else score_contains(pairs)  # the paper's rule
    scorer = MODE_SCORERS[spec.format]
    official, extended = scorer(pairs, "official"), scorer(pairs, "extended")
    shown = extended if spec.scoring == "extended" else official
    return {**shown, "modes": {"official": _brief(official), "extended": _brief(extended)}}


class _Generator:
    """One loaded model and where its predictions go."""

    def __init__(self, model_dir: Path, name: str, cfg: EvalConfig, out_dir: Path):
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


def run_eval_stage(cfg: EvalConfig, model_dir: Path, run_dir: Path, out_dir: Path,
                   judge: J.JudgeConfig | None = None, judge_endpoint: str | None = None) -> dict:
    """Evaluate model_dir on every selected benchmark. `judge` replaces cfg.judge (the pipeline hands
    in an endpoint it started); relative benchmark paths resolve against run_dir."""
    model_dir, run_dir, out_dir = Path(model_dir), Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    judge_cfg = judge or cfg.judge
    specs = cfg.selected()
    bench_items: dict[str, dict[str, list[EvalItem]]] = {}
    for spec in specs:  # every file is read before the model loads: a bad file stops the stage early
        bench_items[spec.key] = {}
        for lang, paths in benchmark_files(spec, run_dir):
            items = _limit(load_items(spec, lang, paths, out_dir), cfg.limit_of(spec), circular=spec.format == "mmbench")
            for it in items:
                bench_items[spec.key].setdefault(lang or it.lang, []).append(it)
    languages = sorted({lang for per in bench_items.values() for lang in per}, key=lambda x: (x != "ko", x))
    candidate = _Generator(model_dir, model_name(model_dir), cfg, out_dir)
    headline = cfg.headline or (specs[0].key if specs else None)
    results: dict = {"model": str(model_dir), "model_name": candidate.name, "languages": languages,
                     "headline": headline, "benchmarks": {}, "preference": {},
                     "formats": {spec.key: spec.format for spec in specs}}
    client = J.make_client(judge_cfg) if cfg.needs_judge() else None
    results["judge"] = {"model": judge_cfg.model, "endpoint": judge_endpoint or judge_cfg.base_url} if client else None
    for spec in specs:
        results["benchmarks"][spec.key] = {}
        for lang, items in bench_items[spec.key].items():
            long = spec.format == "llava_bench"
            tokens = spec.max_new_tokens or (cfg.long_max_new_tokens if long else cfg.max_new_tokens)
            answers = candidate.answers(items, f"{spec.key}_{lang}", tokens)
            if long:
                assert client is not None
                mode = "extended" if spec.scoring == "extended" else "official"
                score = J.review(items, answers, client, judge_cfg,
                                 out_dir / "judgements" / f"{spec.key}_{lang}_{mode}.jsonl", lang, mode)
                score["language_rate"] = language_rate((it.lang, answers[it.question_id]) for it in items)
            elif not any(it.answers for it in items):  # a test split: no gold answers to score against
                score = write_submission(spec, lang, items, answers, out_dir, run_dir)
            else:
                score = score_benchmark(spec, lang, [(it, answers[it.question_id]) for it in items])
            results["benchmarks"][spec.key][lang] = {**score, "dataset": spec.dataset}
    if cfg.preference_on and cfg.opponents and client is not None and cfg.preference_on in bench_items:
        results["preference"] = _preference(cfg, candidate, bench_items[cfg.preference_on], run_dir, out_dir,
                                            client, judge_cfg)
    (out_dir / "suite_scores.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    if headline is not None:
        (out_dir / "scores.json").write_text(json.dumps(results["benchmarks"][headline], indent=1,
                                                        ensure_ascii=False), encoding="utf-8")
    return results


def _preference(cfg: EvalConfig, candidate: _Generator, items_by_lang: dict[str, list[EvalItem]],
                run_dir: Path, out_dir: Path, client: J.OpenAI, judge_cfg: J.JudgeConfig) -> dict:
    out: dict = {}
    for name, path in cfg.opponents.items():
        opponent_dir = Path(path) if Path(path).is_absolute() else run_dir / path
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
                tag = f"preference_{lang}_{variant}" if limit else f"{cfg.preference_on}_{lang}"
                mine = candidate.answers(items, tag, cfg.long_max_new_tokens, limit)
                theirs = opponent.answers(items, tag, cfg.long_max_new_tokens, limit)
                path_out = out_dir / "judgements" / f"pairwise_{name}_{lang}_{variant}.jsonl"
                out[name][variant][lang] = J.pairwise(items, mine, theirs, client, judge_cfg, path_out, lang)
        del opponent
    return out
