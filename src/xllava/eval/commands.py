"""`xllava eval` (one benchmark read from its published files, scored by its protocol) and
`xllava judge` (LLaVA-Bench review, pairwise preference) through any OpenAI-compatible judge.

Only typer is imported at module level: `xllava --help` stays fast; the work is imported lazily.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import typer

from xllava.cli_options import SetOpt, config_option, epilog
from xllava.eval.suite_config import BenchmarkSpec, EvalConfig, JudgeConfig
from xllava.overrides import apply_overrides, field_lines, read_yaml

FORMATS = ("llava", "vqav2", "gqa", "pope", "mmbench", "llava-bench")


def _path(base: Path, value: str | None, what: str, default: str | None = None) -> Path:
    value = value or default
    if value is None:
        raise typer.BadParameter(f"--{what} is needed for this format")
    path = Path(value)
    return path if path.is_absolute() else base / path


def _judge_cfg(config: Path | None, overrides: list[str] | None, base_url: str | None):
    """The judge: a JudgeConfig YAML or a recipe's `eval.judge`, then --set, then --base-url."""
    tree = read_yaml(config) if config else {}
    for section in ("eval", "judge"):
        if isinstance(tree.get(section), dict):
            tree = tree[section]
    tree = apply_overrides(dict(tree), overrides, "judge")
    if base_url:
        tree["base_url"] = base_url
    try:
        cfg = JudgeConfig.model_validate(tree)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--config / --set") from None
    if not cfg.base_url:
        raise typer.BadParameter("the judge's endpoint is needed: --base-url URL (or base_url in --config)")
    return cfg


def _eval_config(fmt: str, paths: dict[str, str | None], config: Path | None, overrides: list[str] | None):
    """EvalConfig of one benchmark: --config (an EvalConfig YAML or a recipe's `eval:`, its benchmark
    list ignored), then each --set to the benchmark's field of that name, else to EvalConfig's."""
    tree = read_yaml(config) if config else {}
    tree = {k: v for k, v in tree.get("eval", tree).items() if k not in ("benchmarks", "only", "headline")}
    spec: dict = {"format": fmt, **{k: v for k, v in paths.items() if v is not None}}
    own = [o for o in overrides or [] if o.split("=", 1)[0].split(".")[0] in BenchmarkSpec.model_fields]
    apply_overrides(spec, own)
    apply_overrides(tree, [o for o in overrides or [] if o not in own], "eval")
    try:
        return EvalConfig.model_validate({**tree, "benchmarks": [spec]})
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--config / --set") from None


EVAL_EPILOG = "\n".join([
    "Benchmark fields for --set:", *field_lines(BenchmarkSpec)[1:],
    "Eval fields for --config / --set (a recipe's `eval:` section works too):",
    *[line for line in field_lines(EvalConfig) if line.split(" ")[0] not in ("benchmarks", "only", "headline")],
])


def eval_command(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    bench_dir: Path = typer.Argument(..., exists=True, file_okay=False,
                                     help="the benchmark's folder (file options are relative to it)"),
    fmt: str = typer.Option(..., "--format", help="llava | vqav2 | gqa | pope | mmbench | llava-bench"),
    out_dir: Path = typer.Option(Path("eval-out"), help="predictions and scores go here"),
    questions: str = typer.Option(None, help="questions file (JSONL, JSON or TSV) or POPE folder"),
    annotations: str = typer.Option(None, help="VQAv2 annotations JSON; GQA questions JSON with the answers of a "
                                    "LLaVA question JSONL; POPE folder of coco_pope_{category}.json labels"),
    submission_questions: str = typer.Option(None, help="VQAv2 test-dev: the full test2015 questions JSON, so the "
                                             "EvalAI file lists every test question"),
    images: str = typer.Option(None, help="image folder (default: BENCH_DIR; llava-bench: BENCH_DIR/images if there)"),
    context: str = typer.Option(None, help="LLaVA-Bench context JSONL (default context.jsonl)"),
    references: str = typer.Option(None, help="LLaVA-Bench reference answers (default answers_gpt4.jsonl)"),
    config: Path = config_option("EvalConfig"),
    overrides: list[str] = SetOpt,
) -> None:
    """Evaluate a LLaVA directory on one public benchmark read from its published files.

    Settings are --set fields of the benchmark (scoring=official|extended|exact_match, languages=[ko],
    limit, dataset, post_prompt, max_new_tokens) or of the eval stage (batch_size, image_first,
    judge.base_url, judge.model, ...)."""
    from xllava.eval.stage import run_eval_stage

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    bench = fmt.replace("-", "_")
    default_questions = "questions.jsonl" if bench == "llava_bench" else None
    default_images = "images" if bench == "llava_bench" and (bench_dir / "images").is_dir() else "."
    paths = {
        "questions": str(_path(bench_dir, questions, "questions", default_questions)),
        "images": str(_path(bench_dir, images, "images", default_images)),
        "annotations": str(_path(bench_dir, annotations, "annotations")) if annotations else None,
        "submission_questions": str(_path(bench_dir, submission_questions, "submission-questions"))
        if submission_questions else None,
        "context": str(_path(bench_dir, context, "context", "context.jsonl")) if bench == "llava_bench" else None,
        "references": str(_path(bench_dir, references, "references", "answers_gpt4.jsonl"))
        if bench == "llava_bench" else None,
    }
    cfg = _eval_config(bench, paths, config, overrides)
    spec = cfg.benchmarks[0]
    if bench == "llava_bench" and not cfg.judge.base_url:
        raise typer.BadParameter("llava-bench needs a judge: --set judge.base_url=URL (and judge.model)")
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


@judge_app.command("review", epilog=epilog(JudgeConfig))
def review_command(
    predictions: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSONL {question_id, text}"),
    bench_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="LLaVA-Bench folder"),
    base_url: str = typer.Option(None, help="judge endpoint (…/v1); same as --set base_url=..."),
    images: str = typer.Option(None, help="image folder (default BENCH_DIR/images or BENCH_DIR)"),
    lang: str = typer.Option(None, help="question language (default: detected)"),
    out: Path = typer.Option(Path("judge-out"), help="judgements and summary go here"),
    config: Path = config_option("JudgeConfig"),
    overrides: list[str] = SetOpt,
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
    cfg = _judge_cfg(config, overrides, base_url)
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


@judge_app.command("pairwise", epilog=epilog(JudgeConfig))
def pairwise_command(
    questions: Path = typer.Argument(..., exists=True, dir_okay=False, help="LLaVA question JSONL"),
    candidate: Path = typer.Argument(..., exists=True, dir_okay=False, help="candidate answers JSONL"),
    opponents: list[str] = typer.Argument(..., help="NAME=ANSWERS_JSONL, one per opponent"),
    base_url: str = typer.Option(None, help="judge endpoint (…/v1); same as --set base_url=..."),
    images: Path = typer.Option(None, help="image folder (default: the questions file's folder)"),
    name: str = typer.Option("candidate", help="the candidate's name in the table"),
    out: Path = typer.Option(Path("judge-out"), help="judgements, table and plot go here"),
    config: Path = config_option("JudgeConfig"),
    overrides: list[str] = SetOpt,
) -> None:
    """Pairwise preference, both answer orders: win/tie/lose per opponent and language, with a plot."""
    from xllava.eval.judge import make_client, pairwise
    from xllava.eval.loaders import load_llava_questions
    from xllava.eval.section import preference_section

    items = load_llava_questions(questions, images or questions.parent)
    mine = _answers(candidate)
    cfg = _judge_cfg(config, overrides, base_url)
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
