"""Official-mode scoring on adversarial predictions: each expected value is what the official code
computes (GT-Vision-Lab vqaEval.py on LLaVA's EvalAI-processed submission, LLaVA-1.5's eval_pope.py,
VLMEvalKit's can_infer at e8e78f05, LLaVA-1.5's parse_score and summarize_gpt_review.py), as recorded
in docs/results/eval-agreement.md. Extended-mode cases show where xllava reads more."""

from __future__ import annotations

from pathlib import Path

import pytest

from xllava.eval.exact_match import is_match
from xllava.eval.items import EvalItem
from xllava.eval.judge import summarise_review_official
from xllava.eval.judge_prompts import official_review_messages, parse_review_official
from xllava.eval.mmbench import can_infer, extract_choice, score_mmbench
from xllava.eval.pope import pope_answer, score_pope
from xllava.eval.scorers import gqa_match, score_gqa, score_vqav2
from xllava.eval.vqa_eval import vqa_accuracy


def item(qid: str, answers: list[str], category: str = "", **extra) -> EvalItem:
    return EvalItem(qid, Path("x.jpg"), "q", "q", "en", answers, category, extra)


# ---------------------------------------------------------------- VQAv2


@pytest.mark.parametrize(("prediction", "answers", "official"), [
    ("Yes", ["yes"] * 10, 1.0),  # capitalisation: the EvalAI processor lower-cases the submission
    ("two", ["two"] * 10, 0.0),  # all agree: the raw "two" is compared with the processed "2"
    ("two", ["2"] * 10, 1.0),  # numbers as words
    ("T-Shirt", ["t-shirt"] * 10, 0.0),  # all agree: "t shirt" against the raw "t-shirt"
    ("the dog", ["dog"] * 10, 1.0),  # articles
    ("a dog", ["dog"] * 9 + ["the dog"], 1.0),  # disagreeing annotators are processed too
    ("Dog.", ["dog"] * 3 + ["cat"] * 7, 0.9),  # leave-one-annotator-out
    ("네", ["네"] * 10, 1.0),  # Korean
    ("是。", ["是"] * 10, 0.0),  # the ideographic full stop is no punctuation to the processor
    ("1,000", ["1000"] * 10, 1.0),
    ("black-and-white", ["black and white"] * 5 + ["black-and-white"] * 5, 1.0),
    ("", ["yes"] * 10, 0.0),
    ("Two", ["2"] * 4 + ["two"] * 2 + ["3"] * 4, 1.0),
    ("dont know", ["don't know"] * 10, 1.0),  # contractions restored
    ("아니요", ["아니요"] * 6 + ["아니오"] * 4, 1.0),
    ("Red.", ["red"] * 10, 1.0),  # punctuation
])
def test_vqav2_official_matches_the_official_evaluator(prediction: str, answers: list[str], official: float) -> None:
    assert vqa_accuracy(prediction, answers, "official") == pytest.approx(official)


def test_vqav2_extended_processes_all_agreeing_answers_too() -> None:
    assert vqa_accuracy("two", ["two"] * 10, "extended") == 1.0
    assert vqa_accuracy("T-Shirt", ["t-shirt"] * 10, "extended") == 1.0


def test_vqav2_score_names_its_mode_and_breaks_down_by_types() -> None:
    pairs = [(item("1", ["two"] * 10, "number", question_type="how many"), "two"),
             (item("2", ["yes"] * 10, "yes/no", question_type="is the"), "Yes")]
    official, extended = score_vqav2(pairs, "official"), score_vqav2(pairs, "extended")
    assert official["mode"] == "official" and official["protocol"].startswith("official")
    assert official["score"] == 0.5 and extended["score"] == 1.0
    assert official["per_type"] == {"number": 0.0, "yes/no": 1.0}
    assert official["per_question_type"] == {"how many": 0.0, "is the": 1.0}


# ---------------------------------------------------------------- POPE


@pytest.mark.parametrize(("text", "official", "extended"), [
    ("Yes", "yes", "yes"), ("No", "no", "no"), ("NO", "yes", "yes"),  # case-sensitive, in both modes
    ("No, there is not.", "no", "no"), ("Yes. There is no cat.", "yes", "yes"), ("There is no dog", "no", "no"),
    ("I don't think so", "yes", "yes"), ("nope", "yes", "yes"), ("Yes, 3.5 cm.", "yes", "yes"),
    ("Yes。No", "yes", "yes"),  # English answers: the ideographic stop is no sentence end
    ("네", "yes", "yes"), ("아니요", "yes", "no"), ("아니요, 보이지 않습니다.", "yes", "no"),
    ("보이지 않습니다", "yes", "no"), ("안 보입니다", "yes", "no"), ("없습니다", "yes", "no"),
    ("없지 않습니다", "yes", "yes"),  # double negative
    ("고양이가 아닙니다", "yes", "no"), ("아니에요", "yes", "no"), ("못 봤어요", "yes", "no"),
    ("네, 상자 안에 있어요.", "yes", "yes"), ("있습니다. 하지만 없습니다", "yes", "yes"),
    ("是", "yes", "yes"), ("不是", "yes", "no"), ("没有", "yes", "no"), ("无", "yes", "no"),
    ("有，不过很小", "yes", "yes"), ("有。没有别的", "yes", "yes"),
])
def test_pope_reading(text: str, official: str, extended: str) -> None:
    assert pope_answer(text, "official") == official
    assert pope_answer(text, "extended") == extended


def test_pope_score_modes() -> None:
    pairs = [(item("1", ["no"], "random"), "보이지 않습니다"), (item("2", ["yes"], "random"), "Yes"),
             (item("3", ["no"], "random"), "No")]
    official, extended = score_pope(pairs, "official"), score_pope(pairs, "extended")
    assert official["pooled"]["fp"] == 1 and extended["pooled"]["fp"] == 0
    assert extended["score"] == 1.0 and official["score"] == pytest.approx(2 / 3)
    assert official["mode"] == "official" and "eval_pope" in official["protocol"]


# ---------------------------------------------------------------- MMBench

OPTIONS = {"A": "red", "B": "blue", "C": "green", "D": "white"}


@pytest.mark.parametrize(("text", "official"), [
    ("A", "A"), ("(B) blue", "B"), ("B:", "B"), ("**D**", "D"), ("Answer: B", "B"), ("The answer is B", "B"),
    ("The correct answer is **C**.", "C"), ("answer is d", "D"), ("A is correct", "A"), ("A is the answer", "A"),
    ("A red car", "A"), ("I think A", "A"), ("A or B", None), ("It is B because the sky is blue and nice", None),
    ("blue", "B"), ("dark blue", "B"), ("red and blue", None), ("Z", "Z"), ("Cannot determine the answer", "Z"),
    ("정답은 B입니다", None), ("B입니다", None), ("答案是B", None), ("Ｂ", None), ("b", None), ("파란색", None),
    ("A, B", None), ("The image shows a red object. So A", "A"), ("E", None),
])
def test_mmbench_official_is_vlmevalkit_exact_matching(text: str, official: str | None) -> None:
    assert can_infer(text, dict(OPTIONS)) == official


@pytest.mark.parametrize(("text", "choice"), [
    ("A is correct", "A"), ("A is the answer", "A"), ("A was right", "A"), ("정답은 B입니다", "B"),
    ("B입니다", "B"), ("答案是B", "B"), ("选项 C", "C"), ("Ｂ", "B"), ("Ⓑ", "B"), ("A or B", None),
])
def test_mmbench_extended_reads_more_phrasings(text: str, choice: str | None) -> None:
    assert extract_choice(text, OPTIONS) == choice


def test_mmbench_score_modes_differ_on_korean_phrasing() -> None:
    pairs = [(item("1", ["B"], "color", options=OPTIONS, g_index=1), "정답은 B입니다"),
             (item("2", ["A"], "color", options=OPTIONS, g_index=2), "A is correct")]
    official, extended = score_mmbench(pairs, "official"), score_mmbench(pairs, "extended")
    assert official["score"] == 0.5 and official["unextracted"] == 1
    assert extended["score"] == 1.0 and extended["mode"] == "extended"


# ---------------------------------------------------------------- GQA


@pytest.mark.parametrize(("prediction", "gold", "official", "extended"), [
    ("Yes.", "yes", True, True), ("YES", "yes", True, True), ("yes ", "yes", False, True),
    ("Red", "red", True, True), ("t-shirt", "t-shirt", True, True), ("the dog", "dog", False, False),
    ("Dog", "Dog", False, True),  # LLaVA lower-cases the prediction; the gold stays as written
])
def test_gqa_modes(prediction: str, gold: str, official: bool, extended: bool) -> None:
    assert gqa_match(prediction, gold, "official") is official
    assert gqa_match(prediction, gold, "extended") is extended


def test_gqa_breaks_down_by_structural_and_semantic_type() -> None:
    pairs = [(item("1", ["yes"], "verify", semantic="attr"), "yes"), (item("2", ["red"], "query", semantic="attr"), "blue")]
    s = score_gqa(pairs)
    assert s["per_type"] == {"query": 0.0, "verify": 1.0} and s["per_semantic_type"] == {"attr": 0.5}


# ---------------------------------------------------------------- LLaVA-Bench


@pytest.mark.parametrize(("reply", "scores"), [
    ("8 7", (8.0, 7.0)), ("8 7.", (8.0, 7.0)), ("8, 7", None), ("8,7", (8.0, 7.0)), ("9.5 10\nbecause", (9.5, 10.0)),
    ("Assistant 1: 8", None), ("8  7", None), (" 8 7", None), ("8\t7", None), ("", None), ("8 7 6", None),
    ("-1 3", (-1.0, 3.0)),
])
def test_llava_bench_official_parsing(reply: str, scores: tuple | None) -> None:
    assert parse_review_official(reply) == scores


def test_llava_bench_official_summary_averages_unparsed_in_and_rounds_as_published() -> None:
    rows = [{"category": "conv", "status": "ok", "parsed": True, "scores": [8.0, 7.0]},
            {"category": "conv", "status": "ok", "parsed": False, "scores": [-1.0, -1.0]},
            {"category": "detail", "status": "ok", "parsed": True, "scores": [9.0, 6.0]},
            {"category": "detail", "status": "failed", "scores": None}]
    s = summarise_review_official(rows, "judge")
    assert s["per_category"]["conv"]["relative"] == round(3.0 / 3.5 * 100, 1) == 85.7
    assert s["per_category"]["all"]["relative"] == round(round(4.0, 3) / round(16 / 3, 3) * 100, 1)
    assert s["unparsed"] == 1 and s["failed"] == 1 and s["n"] == 3 and s["mode"] == "official"


def test_llava_bench_official_messages() -> None:
    system, user = official_review_messages("ctx", "Q?", "ref", "ans", "coco")
    assert system["content"] == "You are a helpful and precise assistant for checking the quality of the answer."
    assert user["content"].startswith("[Context]\nctx\n\n[Question]\nQ?\n\n[Assistant 1]\nref\n\n[End of Assistant 1]")
    assert "bounding box coordinates" in user["content"]
    _, wild = official_review_messages("ctx", "Q?", "ref", "ans")
    assert "a few sentences describing the image" in wild["content"] and wild["content"].endswith("judgment.\n\n")


# ---------------------------------------------------------------- Korean exact match


@pytest.mark.parametrize("prediction", ["아니에요", "아닙니다.", "아니요", "no", "No."])
def test_korean_exact_match_reads_polite_negatives_as_no(prediction: str) -> None:
    assert is_match(prediction, "아니요") and is_match(prediction, "no")
