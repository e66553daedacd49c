"""The evaluation suite on the fast recipe's run: every benchmark type on the world's instances in
Korean and English, pairwise preference between two trained models (align vs instruct), the report
section, resumed predictions, and the `xllava eval` / `xllava judge` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import fast_recipe
from xllava.cli import app
from xllava.eval.section import BENCHMARKS, render_eval_section, render_html
from xllava.eval.stage import run_eval_stage
from xllava.pipeline import world_judge

NAMES = {"short", "vqav2", "gqa", "pope", "mmbench", "llava_bench"}


def run_suite(fast_run: Path, out: Path, **update) -> dict:
    """The tiny recipe's eval section (4 questions a benchmark), judged by the world judge on loopback."""
    recipe = fast_recipe(fast_run)
    cfg = recipe.eval.model_copy(update={"limit": 4, "batch_size": 16, "long_max_new_tokens": 12, **update})
    with world_judge(recipe) as (base_url, model):
        judge = cfg.judge.model_copy(update={"base_url": base_url, "model": model})
        return run_eval_stage(cfg, fast_run / "instruct" / "model", fast_run, out, judge)


@pytest.fixture(scope="module")
def suite(fast_run: Path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("suite")
    return run_suite(fast_run, out), out


def test_every_benchmark_type_in_both_languages(suite: tuple[dict, Path]) -> None:
    scores, out = suite
    assert set(scores["benchmarks"]) == NAMES
    for name, per_lang in scores["benchmarks"].items():
        assert set(per_lang) == {"en", "ko"}, name
        for lang, s in per_lang.items():
            assert s["protocol"] and s["dataset"] == f"world-{name}" and s["n"] > 0, (name, lang)
            assert s["language_rate"]["judged"] + s["language_rate"]["neutral"] > 0
            assert s["score"] is None or 0 <= s["score"] <= 2  # a relative score may pass 100
    assert scores["benchmarks"]["mmbench"]["ko"]["n"] == 4  # limit counts questions, not rotations
    assert scores["benchmarks"]["mmbench"]["ko"]["rows"] > 4
    lb = scores["benchmarks"]["llava_bench"]["ko"]
    assert lb["judge_model"] == "xllava-world-judge" and lb["failed"] == 0 and lb["prompt_version"].startswith("llava")
    # predictions keep the raw output next to the scored text, one file per benchmark and language
    rows = [json.loads(x) for x in (out / "predictions" / "instruct" / "vqav2_ko.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all({"raw", "text", "prompt", "fingerprint"} <= set(r) for r in rows)
    assert json.loads((out / "suite_scores.json").read_text())["benchmarks"].keys() == scores["benchmarks"].keys()


def test_preference_between_two_checkpoints(suite: tuple[dict, Path]) -> None:
    scores, out = suite
    pref = scores["preference"]["align"]
    assert set(pref) == {"full", "30_words"}
    for variant in pref.values():
        for lang in ("en", "ko"):
            r = variant[lang]
            assert r["judged"] + r["failed"] == 4 and r["failed"] == 0
            assert r["win"] + r["tie"] + r["lose"] == r["judged"]
            assert sum(v for v in r["rates"].values()) == pytest.approx(1.0)
    limited = [json.loads(x) for x in (out / "predictions" / "align" / "preference_ko_30_words.jsonl").read_text()
               .splitlines()]
    assert all(len(r["text"].split()) <= 30 and r["prompt"].endswith("한 문장으로 대답해주세요.") for r in limited)


def test_report_section(suite: tuple[dict, Path], tmp_path: Path) -> None:
    scores, _ = suite
    md = render_eval_section(scores, tmp_path)
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert header.index("ko: short answers") < header.index("en: short answers")  # Korean columns first
    for title, metric in (BENCHMARKS[name] for name in NAMES):
        assert f"ko: {title}" in header and f"en: {title}" in header
        assert f"**{title}" in md and metric in md  # each score's protocol is named
    for protocol_word in ("EvalAI", "CircularEval", "eval_pope", "네/예", "NFC", "relative score", "GQA"):
        assert protocol_word in md
    assert "| align | full | ko |" in md and "| align | 30 words | en |" in md
    assert "not placed beside ours" in md  # the world is not the paper's benchmark
    for plot in ("eval_benchmarks.png", "eval_preference.png"):
        assert f"({plot})" in md and (tmp_path / plot).stat().st_size > 5000
    html = render_html(md, "run report")
    assert html.count("<table>") >= 5 and '<img src="eval_preference.png"' in html and "<th>ko: GQA-style</th>" in html


def test_paper_numbers_beside_ours_only_for_the_same_benchmark(suite: tuple[dict, Path], tmp_path: Path) -> None:
    scores = json.loads(json.dumps(suite[0]))
    scores["benchmarks"]["vqav2"]["en"]["dataset"] = "vqav2-testdev"
    md = render_eval_section(scores, tmp_path)
    paper_row = next(line for line in md.splitlines() if line.startswith("| X-LLaVA (paper"))
    assert paper_row.count("75.5") == 1 and "64.0" not in paper_row


def test_interrupted_suite_resumes(fast_run: Path, suite: tuple[dict, Path], tmp_path: Path) -> None:
    scores, out = suite
    resumed = tmp_path / "suite"
    (resumed / "predictions").mkdir(parents=True)
    # a copy of the finished predictions, one file cut mid-line as a killed run leaves it
    import shutil

    shutil.copytree(out / "predictions", resumed / "predictions", dirs_exist_ok=True)
    torn = resumed / "predictions" / "instruct" / "gqa_en.jsonl"
    lines = torn.read_text(encoding="utf-8").splitlines()
    torn.write_text("\n".join(lines[:2]) + '\n{"question_id": "en-co', encoding="utf-8")
    again = run_suite(fast_run, resumed, only=["gqa", "short"], opponents={})
    assert torn.read_text(encoding="utf-8").splitlines()[:2] == lines[:2]
    assert len(torn.read_text(encoding="utf-8").splitlines()) == len(lines)
    assert again["benchmarks"]["gqa"] == scores["benchmarks"]["gqa"]


def test_eval_command_public_format_and_default(fast_run: Path, suite: tuple[dict, Path], tmp_path: Path) -> None:
    _, out = suite
    model = str(fast_run / "instruct" / "model")
    bench = fast_run / "world" / "benchmarks" / "gqa"
    result = CliRunner().invoke(app, ["eval", model, str(bench), "--format", "gqa", "--questions", "ko_questions.json",
                                      "--images", str(fast_run / "world" / "images"), "-s", "languages=[ko]", "-s", "limit=3",
                                      "--out-dir", str(tmp_path / "gqa"), "-s", "dataset=world-gqa"])
    assert result.exit_code == 0, result.output
    assert "gqa ko: accuracy" in result.output and "protocol: official: GQA" in result.output
    scores = json.loads((tmp_path / "gqa" / "suite_scores.json").read_text())["benchmarks"]["gqa"]
    assert scores["ko"]["dataset"] == "world-gqa"
    # LLaVA question JSONL with gold answers, scored per question type
    result = CliRunner().invoke(app, ["eval", model, str(fast_run / "world"), "--format", "llava", "--questions",
                                      "bench/en.jsonl", "-s", "scoring=exact_match", "-s", "limit=12",
                                      "--out-dir", str(tmp_path / "short")])
    assert result.exit_code == 0, result.output
    assert "llava en: accuracy (mean over types)" in result.output
    per_type = json.loads((tmp_path / "short" / "suite_scores.json").read_text())["benchmarks"]["llava"]["en"]
    assert len(per_type["per_type"]) == 6 and set(per_type["majority_baseline"]) == set(per_type["per_type"])


def test_judge_pairwise_command(fast_run: Path, suite: tuple[dict, Path], tmp_path: Path) -> None:
    from xllava.datagen.openai_server import ServerThread, create_app
    from xllava.world.judge import MODEL_NAME, WorldJudge

    _, out = suite
    lb = fast_run / "world" / "benchmarks" / "llava_bench" / "en"
    mine = out / "predictions" / "instruct" / "llava_bench_en.jsonl"
    theirs = out / "predictions" / "align" / "llava_bench_en.jsonl"
    with ServerThread(create_app(WorldJudge(fast_run / "world"), model_ids=(MODEL_NAME,))) as server:
        # only the first four questions were answered (limit=4): judge those
        questions = tmp_path / "q.jsonl"
        questions.write_text("".join(lb.joinpath("questions.jsonl").read_text().splitlines(keepends=True)[:4]))
        result = CliRunner().invoke(app, ["judge", "pairwise", str(questions), str(mine), f"align={theirs}",
                                          "--images", str(fast_run / "world" / "images"), "--base-url",
                                          server.base_url, "-s", f"model={MODEL_NAME}", "--name", "instruct",
                                          "--out", str(tmp_path / "j")])
    assert result.exit_code == 0, result.output
    assert "| align | full | en |" in result.output
    assert (tmp_path / "j" / "eval_preference.png").exists()
