"""`xllava eval` (one benchmark in a public format, the world suite, or the world's short answers)
and `xllava judge` (LLaVA-Bench review, pairwise preference, the world judge server).

Only typer is imported at module level: `xllava --help` stays fast; the work is imported lazily.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import typer

FORMATS = ("world", "suite", "llava", "vqav2", "gqa", "pope", "mmbench", "llava-bench")


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
                                     help="world format: folder of {lang}.jsonl; suite: a world directory; "
                                     "other formats: the benchmark's folder (file options are relative to it)"),
    out_dir: Path = typer.Option(Path("eval-out"), help="predictions and scores go here"),
    lang: list[str] = typer.Option(["en", "ko"], help="languages to evaluate; for one public benchmark, give one "
                                   "to set the question language (otherwise detected per question)"),
    limit: int = typer.Option(None, help="first N questions per language"),
    fmt: str = typer.Option("world", "--format", help="world | suite | llava | vqav2 | gqa | pope | mmbench | "
                            "llava-bench"),
    questions: str = typer.Option(None, help="questions file (JSONL, JSON or TSV)"),
    annotations: str = typer.Option(None, help="VQAv2 annotations JSON"),
    images: str = typer.Option(None, help="image folder (default: BENCH_DIR)"),
    context: str = typer.Option(None, help="LLaVA-Bench context JSONL (default context.jsonl)"),
    references: str = typer.Option(None, help="LLaVA-Bench reference answers (default answers_gpt4.jsonl)"),
    dataset: str = typer.Option(None, help="dataset name kept with the scores, e.g. vqav2-testdev, pope, "
                                "gqa-testdev-balanced (the report puts the paper's number beside a known one)"),
    batch_size: int = typer.Option(32),
    max_new_tokens: int = typer.Option(None, help="default 16, LLaVA-Bench 256"),
    judge_url: str = typer.Option(None, help="OpenAI-compatible judge endpoint (…/v1); key from $OPENAI_API_KEY"),
    judge_model: str = typer.Option(None, help="judge model name"),
    opponent: list[str] = typer.Option(None, help="suite: NAME=MODEL_DIR, a pairwise-preference opponent"),
) -> None:
    """Evaluate a LLaVA directory: the world's short answers (default), the whole world suite, or one
    public benchmark read from the user's files."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "world":
        from xllava.config import EvalConfig
        from xllava.eval.world_bench import evaluate

        scores = evaluate(EvalConfig(languages=lang, limit=limit), model_dir, bench_dir, out_dir)
        for code, s in scores.items():
            typer.echo(f"{code}: {s['accuracy']:.1%}  " + "  ".join(f"{c}={v:.0%}" for c, v in s["per_type"].items()))
        return
    if fmt == "suite":
        from xllava.eval.section import render_eval_section
        from xllava.eval.suite import EvalSuiteConfig, run_eval_suite

        pairs = [o.split("=", 1) for o in opponent or []]
        if any(len(p) != 2 for p in pairs):
            raise typer.BadParameter("--opponent takes NAME=MODEL_DIR")
        opponents = {name: str(Path(path).resolve()) for name, path in pairs}  # relative to here, not the run
        cfg = EvalSuiteConfig(languages=lang, limit=limit, batch_size=batch_size, opponents=opponents,
                              judge=_judge_cfg(judge_url, judge_model))
        results = run_eval_suite(cfg, model_dir, bench_dir, out_dir)
        (out_dir / "eval_section.md").write_text(render_eval_section(results, out_dir), encoding="utf-8")
        typer.echo(f"scores: {out_dir / 'suite_scores.json'}\nreport section: {out_dir / 'eval_section.md'}")
        return
    scores = evaluate_public(fmt, model_dir, bench_dir, out_dir, lang[0] if len(lang) == 1 else None, limit,
                             questions, annotations, images, context, references, dataset, batch_size,
                             max_new_tokens, judge_url, judge_model)
    for code, s in scores.items():
        extra = f"  failed judgements: {s['failed']}" if "failed" in s else ""
        score = "n/a" if s["score"] is None else f"{s['score']:.1%}"
        typer.echo(f"{fmt} {code}: {s['metric']} {score} (n={s['n']}){extra}\n  protocol: {s['protocol']}")


def evaluate_public(fmt: str, model_dir: Path, bench_dir: Path, out_dir: Path, lang: str | None, limit: int | None,
                    questions: str | None, annotations: str | None, images: str | None, context: str | None,
                    references: str | None, dataset: str | None, batch_size: int, max_new_tokens: int | None,
                    judge_url: str | None, judge_model: str | None) -> dict:
    """One public-format benchmark: load, generate (resumable), score per question language."""
    from xllava.eval import loaders as L
    from xllava.eval.generate import generate_predictions, model_fingerprint
    from xllava.eval.suite import model_name, score_benchmark
    from xllava.model.assemble import load_llava

    image_dir = _path(bench_dir, images, "images", ".")
    if fmt == "llava":
        items = L.load_llava_questions(_path(bench_dir, questions, "questions"), image_dir, lang)
    elif fmt == "vqav2":
        ann = _path(bench_dir, annotations, "annotations") if annotations else None
        items = L.load_vqav2(_path(bench_dir, questions, "questions"), ann, image_dir, lang)
    elif fmt == "gqa":
        items = L.load_gqa(_path(bench_dir, questions, "questions"), image_dir, lang)
    elif fmt == "pope":
        items = L.load_pope(_path(bench_dir, questions, "questions"), image_dir, lang)
    elif fmt == "mmbench":
        items = L.load_mmbench_tsv(_path(bench_dir, questions, "questions"), out_dir / "images", lang)
    else:
        items = L.load_llava_bench(_path(bench_dir, questions, "questions", "questions.jsonl"),
                                   _path(bench_dir, context, "context", "context.jsonl"),
                                   _path(bench_dir, references, "references", "answers_gpt4.jsonl"), image_dir, lang)
    if limit:
        items = items[:limit]
    if fmt == "llava-bench" and not judge_url:
        raise typer.BadParameter("llava-bench needs a judge: --judge-url (and --judge-model)")
    model, processor = load_llava(model_dir)
    rows = generate_predictions(model, processor, items, out_dir / f"predictions_{fmt}.jsonl",
                                model_id=model_name(model_dir), fingerprint=model_fingerprint(model_dir),
                                batch_size=batch_size, max_new_tokens=max_new_tokens or (256 if fmt == "llava-bench"
                                                                                         else 16))
    by_lang: dict[str, list] = defaultdict(list)
    for it in items:
        by_lang[it.lang].append(it)
    scores = {}
    for code, group in by_lang.items():
        if fmt == "llava-bench":
            from xllava.eval.judge import make_client, review

            cfg = _judge_cfg(judge_url, judge_model)
            answers = {it.question_id: rows[it.question_id]["text"] for it in group}
            scores[code] = review(group, answers, make_client(cfg), cfg, out_dir / f"judgements_{code}.jsonl", code)
        else:
            bench = {"llava": "short", "llava-bench": "llava_bench"}.get(fmt, fmt)
            scores[code] = score_benchmark(bench, code, [(it, rows[it.question_id]["text"]) for it in group])
        scores[code]["dataset"] = dataset or fmt
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"scores_{fmt}.json").write_text(json.dumps(scores, indent=1, ensure_ascii=False), encoding="utf-8")
    return scores


# ---------------------------------------------------------------- xllava judge

judge_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="LLM judges through an OpenAI-compatible endpoint: LLaVA-Bench review, pairwise "
                        "preference, and the offline world judge server.")


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
) -> None:
    """LLaVA-Bench review: relative score per category; failed judgements counted and excluded."""
    from xllava.eval.judge import make_client, review
    from xllava.eval.loaders import load_llava_bench

    image_dir = _path(bench_dir, images, "images", "images" if (bench_dir / "images").is_dir() else ".")
    items = load_llava_bench(bench_dir / "questions.jsonl", bench_dir / "context.jsonl",
                             bench_dir / "answers_gpt4.jsonl", image_dir, lang)
    answers = _answers(predictions)
    missing = [it.question_id for it in items if it.question_id not in answers]
    if missing:
        raise typer.BadParameter(f"{predictions}: no answer for question ids {missing[:5]}")
    cfg = _judge_cfg(base_url, model, concurrency)
    by_lang: dict[str, list] = defaultdict(list)
    for it in items:
        by_lang[it.lang].append(it)
    summary = {code: review(group, answers, make_client(cfg), cfg, out / f"review_{code}.jsonl", code)
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


@judge_app.command("serve")
def serve_command(
    world_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a world directory"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8012),
    rate_500: float = typer.Option(0.0, help="share of calls answered with HTTP 500 (fault injection)"),
    seed: int = typer.Option(0),
) -> None:
    """Serve the offline world judge (a scene-graph fact checker) as an OpenAI-compatible endpoint."""
    from xllava.datagen.openai_server import FaultConfig, create_app, serve_forever
    from xllava.eval.world_judge import MODEL_NAME, WorldJudge

    typer.echo(f"world judge `{MODEL_NAME}` on http://{host}:{port}/v1")
    serve_forever(create_app(WorldJudge(world_dir), FaultConfig(rate_500=rate_500, seed=seed), (MODEL_NAME,)),
                  host, port)
