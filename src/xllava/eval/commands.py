"""`xllava eval` (one benchmark read from its published files, scored by its protocol) and
`xllava judge` (LLaVA-Bench review, pairwise preference) through any OpenAI-compatible judge.

Only typer is imported at module level: `xllava --help` stays fast; the work is imported lazily.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import typer

FORMATS = ("llava", "vqav2", "gqa", "pope", "mmbench", "llava-bench")


def _path(base: Path, value: str | None, what: str, default: str | None = None) -> Path:
    value = value or default
    if value is None:
        raise typer.BadParameter(f"--{what} is needed for this format")
    path = Path(value)
    return path if path.is_absolute() else base / path


def _judge_cfg(url: str | None, model: str | None, concurrency: int = 4):
    from xllava.eval.judge import JudgeConfig

    fields = {"base_url": url, "concurrency": concurrency}
    if model:
        fields["model"] = model
    return JudgeConfig(**fields)


def eval_command(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    bench_dir: Path = typer.Argument(..., exists=True, file_okay=False,
                                     help="the benchmark's folder (file options are relative to it)"),
    fmt: str = typer.Option(..., "--format", help="llava | vqav2 | gqa | pope | mmbench | llava-bench"),
    out_dir: Path = typer.Option(Path("eval-out"), help="predictions and scores go here"),
    lang: str = typer.Option(None, help="the questions' language (default: detected per question)"),
    limit: int = typer.Option(None, help="first N questions, taken in turn from each category"),
    questions: str = typer.Option(None, help="questions file (JSONL, JSON or TSV)"),
    annotations: str = typer.Option(None, help="VQAv2 annotations JSON; GQA questions JSON with the answers of a "
                                    "LLaVA question JSONL; POPE folder of coco_pope_{category}.json labels"),
    submission_questions: str = typer.Option(None, help="VQAv2 test-dev: the full test2015 questions JSON, so the "
                                             "EvalAI file lists every test question"),
    images: str = typer.Option(None, help="image folder (default: BENCH_DIR; llava-bench: BENCH_DIR/images if there)"),
    context: str = typer.Option(None, help="LLaVA-Bench context JSONL (default context.jsonl)"),
    references: str = typer.Option(None, help="LLaVA-Bench reference answers (default answers_gpt4.jsonl)"),
    dataset: str = typer.Option(None, help="dataset name kept with the scores, e.g. vqav2-testdev, pope, "
                                "gqa-testdev-balanced (the report puts the paper's number beside a known one)"),
    scoring: str = typer.Option("official", help="official (the benchmark's own scoring code; llava format: the "
                                "paper's rule) or extended (xllava's multilingual reading; both are stored); "
                                "llava format also exact_match (per category, with majority baselines)"),
    post_prompt: str = typer.Option("default", help="default | short_answer | llava | none | any text"),
    batch_size: int = typer.Option(32),
    max_new_tokens: int = typer.Option(None, help="default 16, LLaVA-Bench 256"),
    image_first: bool = typer.Option(True, help="<image> before the question (LLaVA's order) or after it"),
    judge_url: str = typer.Option(None, help="OpenAI-compatible judge endpoint (…/v1); key from $OPENAI_API_KEY"),
    judge_model: str = typer.Option(None, help="judge model name"),
) -> None:
    """Evaluate a LLaVA directory on one public benchmark read from its published files."""
    from xllava.eval.stage import run_eval_stage
    from xllava.eval.suite_config import BenchmarkSpec, EvalConfig

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "llava-bench" and not judge_url:
        raise typer.BadParameter("llava-bench needs a judge: --judge-url (and --judge-model)")
    bench = fmt.replace("-", "_")
    default_questions = "questions.jsonl" if bench == "llava_bench" else None
    default_images = "images" if bench == "llava_bench" and (bench_dir / "images").is_dir() else "."
    spec = BenchmarkSpec(
        format=bench, questions=str(_path(bench_dir, questions, "questions", default_questions)),
        images=str(_path(bench_dir, images, "images", default_images)), dataset=dataset, scoring=scoring,
        annotations=str(_path(bench_dir, annotations, "annotations")) if annotations else None,
        submission_questions=str(_path(bench_dir, submission_questions, "submission-questions"))
        if submission_questions else None,
        context=str(_path(bench_dir, context, "context", "context.jsonl")) if bench == "llava_bench" else None,
        references=str(_path(bench_dir, references, "references", "answers_gpt4.jsonl"))
        if bench == "llava_bench" else None,
        languages=[lang] if lang else None, post_prompt=post_prompt, limit=limit, max_new_tokens=max_new_tokens)
    cfg = EvalConfig(benchmarks=[spec], batch_size=batch_size, image_first=image_first,
                     judge=_judge_cfg(judge_url, judge_model))
    results = run_eval_stage(cfg, model_dir, Path.cwd(), out_dir)
    for code, s in results["benchmarks"][spec.key].items():
        extra = f"  failed judgements: {s['failed']}" if "failed" in s else ""
        score = "n/a" if s.get("score") is None else f"{s['score']:.1%}"
        typer.echo(f"{fmt} {code}: {s['metric']} {score} (n={s['n']}){extra}\n  protocol: {s['protocol']}")
        for mode, other in s.get("modes", {}).items():
            if mode != s.get("mode") and other.get("score") is not None:
                typer.echo(f"  {mode}: {other['score']:.1%} ({other['protocol']})")
        if s.get("submission"):
            typer.echo(f"  submission file: {s['submission']}")
    typer.echo(f"scores: {out_dir / 'suite_scores.json'}")


# ---------------------------------------------------------------- xllava judge

judge_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="LLM judges through an OpenAI-compatible endpoint: LLaVA-Bench review and pairwise "
                        "preference.")


def _answers(path: Path) -> dict[str, str]:
    from xllava.eval.loaders import read_jsonl_rows

    return {str(row["question_id"]): str(row.get("text", "")) for _, row in read_jsonl_rows(path)}


@judge_app.command("review")
def review_command(
    predictions: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL {question_id, text}"),
    bench_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="LLaVA-Bench folder"),
    base_url: str = typer.Option(..., help="judge endpoint (…/v1)"),
    model: str = typer.Option(None, help="judge model"),
    images: str = typer.Option(None, help="image folder (default BENCH_DIR/images or BENCH_DIR)"),
    lang: str = typer.Option(None, help="question language (default: detected)"),
    out: Path = typer.Option(Path("judge-out"), help="judgements and summary go here"),
    concurrency: int = typer.Option(4),
    mode: str = typer.Option("official", help="official (LLaVA-1.5's published rule, parsing and summary) or "
                             "extended (xllava's prompts, Korean rule, failed judgements excluded)"),
    questions: str = typer.Option("questions.jsonl", help="questions file in BENCH_DIR (COCO: qa90_questions.jsonl)"),
    context: str = typer.Option("context.jsonl", help="context file (COCO: caps_boxes_coco2014_val_80.jsonl)"),
    references: str = typer.Option("answers_gpt4.jsonl", help="reference answers (COCO: qa90_gpt4_answer.jsonl)"),
) -> None:
    """LLaVA-Bench review: relative score per category; failed judge calls counted and excluded."""
    from xllava.eval.judge import make_client, review
    from xllava.eval.loaders import load_llava_bench

    if mode not in ("official", "extended"):
        raise typer.BadParameter("--mode must be official or extended")
    image_dir = _path(bench_dir, images, "images", "images" if (bench_dir / "images").is_dir() else ".")
    items = load_llava_bench(bench_dir / questions, bench_dir / context, bench_dir / references, image_dir, lang)
    answers = _answers(predictions)
    missing = [it.question_id for it in items if it.question_id not in answers]
    if missing:
        raise typer.BadParameter(f"{predictions}: no answer for question ids {missing[:5]}")
    cfg = _judge_cfg(base_url, model, concurrency)
    by_lang: dict[str, list] = defaultdict(list)
    for it in items:
        by_lang[it.lang].append(it)
    summary = {code: review(group, answers, make_client(cfg), cfg, out / f"review_{code}_{mode}.jsonl", code, mode)
               for code, group in by_lang.items()}
    (out / "review_summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    for code, s in summary.items():
        rel = "n/a" if s["score"] is None else f"{s['score'] * 100:.1f}"
        typer.echo(f"{code}: relative score {rel} (judged {s['n']}, failed {s['failed']}; {s['judge_model']}, "
                   f"{s['prompt_version']})")


@judge_app.command("pairwise")
def pairwise_command(
    questions: Path = typer.Argument(..., exists=True, dir_okay=False, help="LLaVA question JSONL"),
    candidate: Path = typer.Argument(..., exists=True, dir_okay=False, help="candidate answers JSONL"),
    opponents: list[str] = typer.Argument(..., help="NAME=ANSWERS_JSONL, one per opponent"),
    base_url: str = typer.Option(..., help="judge endpoint (…/v1)"),
    model: str = typer.Option(None, help="judge model"),
    images: Path = typer.Option(None, help="image folder (default: the questions file's folder)"),
    name: str = typer.Option("candidate", help="the candidate's name in the table"),
    out: Path = typer.Option(Path("judge-out"), help="judgements, table and plot go here"),
    concurrency: int = typer.Option(4),
) -> None:
    """Pairwise preference, both answer orders: win/tie/lose per opponent and language, with a plot."""
    from xllava.eval.judge import make_client, pairwise
    from xllava.eval.loaders import load_llava_questions
    from xllava.eval.section import preference_section

    items = load_llava_questions(questions, images or questions.parent)
    mine = _answers(candidate)
    cfg = _judge_cfg(base_url, model, concurrency)
    by_lang: dict[str, list] = defaultdict(list)
    for it in items:
        by_lang[it.lang].append(it)
    table: dict = {}
    for spec in opponents:
        opp_name, path = spec.split("=", 1)
        theirs = _answers(Path(path))
        table[opp_name] = {"full": {code: pairwise(group, mine, theirs, make_client(cfg), cfg,
                                                   out / f"pairwise_{opp_name}_{code}.jsonl", code)
                                    for code, group in by_lang.items()}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "pairwise_summary.json").write_text(json.dumps(table, indent=1, ensure_ascii=False), encoding="utf-8")
    markdown = preference_section({"preference": table, "model_name": name}, list(by_lang), out)
    (out / "pairwise.md").write_text("\n".join(markdown), encoding="utf-8")
    typer.echo("\n".join(markdown))
