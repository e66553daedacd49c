"""Judges over real HTTP: the official openai client against the fault-injecting OpenAI-compatible
server (xllava.datagen.openai_server) with the world judge plugged in. Failed judgements are counted
and excluded, never scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_eval_loaders import small_world  # noqa: F401  (fixture)
from xllava.datagen.openai_server import FaultConfig, ServerThread, create_app
from xllava.eval import judge as J
from xllava.eval.judge_prompts import parse_pairwise, parse_review, review_messages
from xllava.eval.loaders import load_llava_bench
from xllava.world.benchmarks import write_world_benchmarks
from xllava.world.judge import MODEL_NAME, WorldJudge


@pytest.mark.parametrize(("reply", "scores"), [
    ("8 7\nBecause ...", (8.0, 7.0)), ("8, 7", (8.0, 7.0)), ("\n 9.5 10 \n", (9.5, 10.0)),
    ("Assistant 1: 8, Assistant 2: 7", None), ("8", None), ("11 3", None), ("", None), ("eight seven", None),
])
def test_parse_review(reply: str, scores: tuple | None) -> None:
    assert parse_review(reply) == scores


@pytest.mark.parametrize(("reply", "verdict"), [
    ("Answer A is better", "A"), ("answer b is better.\nIt names the colour.", "B"),
    ("Both answers are similar", "tie"), ("I prefer the first one", None),
])
def test_parse_pairwise(reply: str, verdict: str | None) -> None:
    assert parse_pairwise(reply) == verdict


@pytest.mark.parametrize(("first", "second", "outcome"), [
    ("A", "B", "win"),  # candidate preferred in both orders
    ("B", "A", "lose"),
    ("A", "A", "tie"),  # the judge always picks the first answer: position bias cancels to a tie
    ("B", "B", "tie"),
    ("A", "tie", "tie"), ("tie", "tie", "tie"),
])
def test_both_orders_must_agree(first: str, second: str, outcome: str) -> None:
    assert J.combine_orders(first, second) == outcome


def _bench(world: Path, tmp: Path, lang: str) -> list:
    files = write_world_benchmarks(world, tmp / "bench", ["en", "ko"])
    lb = files["llava_bench"][lang]
    return load_llava_bench(Path(lb["questions"]), Path(lb["context"]), Path(lb["answers_gpt4"]),
                            Path(files["images"]), lang)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_world_judge_scores_reference_high_and_wrong_answers_low(small_world: Path, tmp_path: Path, lang: str) -> None:  # noqa: F811
    judge = WorldJudge(small_world)
    item = next(it for it in _bench(small_world, tmp_path, lang) if it.category == "detail")
    ref = item.extra["reference"]
    body = {"messages": review_messages(item.extra["context"], item.question, ref, ref, lang)}
    assert parse_review(judge.respond(body)) == (10.0, 10.0)
    other = "A snowy night with a purple kite." if lang == "en" else "눈 오는 밤이에요. 보라색 연이 있어요."
    body = {"messages": review_messages(item.extra["context"], item.question, ref, other, lang)}
    ref_score, other_score = parse_review(judge.respond(body))
    assert ref_score == 10.0 and other_score < 5


def test_review_with_failing_server_counts_and_excludes_failures(small_world: Path, tmp_path: Path) -> None:  # noqa: F811
    items = _bench(small_world, tmp_path, "en")
    # half the answers are the reference (judged 10), half empty (judged 1)
    answers = {it.question_id: it.extra["reference"] if i % 2 else "" for i, it in enumerate(items)}
    cfg = J.JudgeConfig(model=MODEL_NAME, max_retries=0, concurrency=3)
    out = tmp_path / "review.jsonl"
    app = create_app(WorldJudge(small_world), FaultConfig(rate_500=0.2, seed=3), (MODEL_NAME,))
    with ServerThread(app) as server:
        summary = J.review(items, answers, J.make_client(cfg, server.base_url), cfg, out, "en", "extended")
        injected = server.stats.faults["500"]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    failed = [r for r in rows if r["status"] == "failed"]
    assert 0 < injected < len(items)
    assert len(failed) == injected == summary["failed"]  # every failed call is counted ...
    assert all(r["scores"] is None and "InternalServerError" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert summary["n"] == len(ok) == len(items) - injected  # ... and only the answers that came back score
    expected = sum(r["scores"][1] for r in ok) / sum(r["scores"][0] for r in ok)
    assert summary["score"] == pytest.approx(expected)
    assert summary["judge_model"] == MODEL_NAME and "llava-bench-review" in summary["prompt_version"]
    assert all(r["judge_model"] == MODEL_NAME and r["prompt_version"] == summary["prompt_version"] for r in rows)
    assert sum(v["judged"] + v["failed"] for c, v in summary["per_category"].items() if c != "all") == len(items)

    # a rerun against a healthy endpoint asks again only for the failed judgements
    with ServerThread(create_app(WorldJudge(small_world), model_ids=(MODEL_NAME,))) as server:
        again = J.review(items, answers, J.make_client(cfg, server.base_url), cfg, out, "en", "extended")
        assert server.stats.faults["ok"] == injected
    assert again["failed"] == 0 and again["n"] == len(items)


def test_pairwise_with_failing_server(small_world: Path, tmp_path: Path) -> None:  # noqa: F811
    items = _bench(small_world, tmp_path, "ko")
    good = {it.question_id: it.extra["reference"] for it in items}
    bad = {it.question_id: "모르겠어요" for it in items}
    cfg = J.JudgeConfig(model=MODEL_NAME, max_retries=0)
    app = create_app(WorldJudge(small_world), FaultConfig(rate_500=0.2, seed=1), (MODEL_NAME,))
    with ServerThread(app) as server:
        result = J.pairwise(items, good, bad, J.make_client(cfg, server.base_url), cfg, tmp_path / "p.jsonl", "ko")
        injected = server.stats.faults["500"]
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert injected > 0
    # an item fails when either of its two orders failed; its other verdict is not used
    assert result["failed"] == sum(r["status"] == "failed" for r in rows) > 0
    assert sum(e is not None for r in rows for e in r["errors"]) == injected
    assert result["judged"] == len(items) - result["failed"]
    assert result["win"] + result["tie"] + result["lose"] == result["judged"]
    assert result["lose"] == 0 and result["win"] > 0  # the reference answers state the scene's facts
    assert result["judge_model"] == MODEL_NAME and result["prompt_version"]


def test_unknown_image_is_a_failed_judgement_not_a_tie(small_world: Path, tmp_path: Path) -> None:  # noqa: F811
    from PIL import Image

    items = _bench(small_world, tmp_path, "en")[:2]
    stranger = tmp_path / "stranger.png"
    Image.new("RGB", (16, 16), "black").save(stranger)
    for it in items:
        it.image = stranger
    answers = {it.question_id: "red" for it in items}
    cfg = J.JudgeConfig(model=MODEL_NAME, max_retries=0)
    with ServerThread(create_app(WorldJudge(small_world), model_ids=(MODEL_NAME,))) as server:
        result = J.pairwise(items, answers, answers, J.make_client(cfg, server.base_url), cfg, tmp_path / "u.jsonl",
                            "en")
    assert result["failed"] == 2 and result["judged"] == 0 and result["rates"]["win"] is None


def test_unreachable_endpoint_fails_every_judgement(small_world: Path, tmp_path: Path) -> None:  # noqa: F811
    items = _bench(small_world, tmp_path, "en")[:3]
    cfg = J.JudgeConfig(model="gpt-4o", max_retries=0, timeout_s=2)
    client = J.make_client(cfg, "http://127.0.0.1:9/v1")  # discard port: nothing listens
    summary = J.review(items, {it.question_id: "x" for it in items}, client, cfg, tmp_path / "r.jsonl", "en")
    assert summary["failed"] == 3 and summary["n"] == 0 and summary["score"] is None


def test_judge_review_command(small_world: Path, tmp_path: Path) -> None:  # noqa: F811
    from typer.testing import CliRunner

    from xllava.cli import app

    files = write_world_benchmarks(small_world, tmp_path / "bench", ["en", "ko"])
    folder = Path(files["llava_bench"]["ko"]["questions"]).parent
    predictions = tmp_path / "pred.jsonl"
    predictions.write_text((folder / "answers_gpt4.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    with ServerThread(create_app(WorldJudge(small_world), FaultConfig(rate_500=0.2, seed=5), (MODEL_NAME,))) as server:
        result = CliRunner().invoke(app, ["judge", "review", str(predictions), str(folder), "--base-url",
                                          server.base_url, "-s", f"model={MODEL_NAME}", "--images", files["images"],
                                          "--out", str(tmp_path / "out"), "-s", "concurrency=2"])
        injected = server.stats.faults["500"]
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "review_summary.json").read_text())["ko"]
    # the client retries (max_retries=2 by default), so most injected failures are recovered
    assert summary["n"] + summary["failed"] == 18 and injected > 0
    assert summary["score"] == pytest.approx(1.0)  # the references themselves: relative score 100
    assert f"ko: relative score 100.0 (judged {summary['n']}, failed {summary['failed']}" in result.output
