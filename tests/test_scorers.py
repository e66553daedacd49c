"""Hand-made edge cases per protocol: GQA, POPE, the paper's Korean exact match, BVQA-en containment,
MMBench choice extraction (Korean phrasing) and CircularEval, and the answer-language rate."""

from __future__ import annotations

from pathlib import Path

import pytest

from xllava.eval.items import EvalItem
from xllava.eval.language import NEUTRAL, detect_language, language_rate
from xllava.eval.mmbench import extract_choice, score_mmbench
from xllava.eval.scorers import (
    contains_match,
    gqa_match,
    pope_answer,
    pope_metrics,
    score_contains,
    score_exact_ko,
    score_gqa,
    score_pope,
)


def item(qid: str, answers: list[str], category: str = "", lang: str = "en", **extra) -> EvalItem:
    return EvalItem(qid, Path("x.png"), "q", "q", lang, answers, category, extra)


# ---------------------------------------------------------------- GQA


@pytest.mark.parametrize(("pred", "gold", "hit"), [
    ("Yes.", "yes", True), ("left", "left", True), ("Left...", "left", True), ("on the left", "left", False),
    ("yes!", "yes", False),  # GQA strips final periods only
    ("네", "yes", False), ("예", "네", False),  # no yes/네 merging in GQA
    ("\u1102\u1166", "네", True),  # NFC
])
def test_gqa_exact_match(pred: str, gold: str, hit: bool) -> None:
    assert gqa_match(pred, gold) is hit


def test_gqa_score_per_type() -> None:
    pairs = [(item("1", ["red"], "colour"), "Red."), (item("2", ["blue"], "colour"), "red"),
             (item("3", ["2"], "count"), "2")]
    s = score_gqa(pairs)
    assert s["score"] == pytest.approx(2 / 3)
    assert s["per_type"] == {"colour": 0.5, "count": 1.0}
    assert "GQA" in s["protocol"]


# ---------------------------------------------------------------- the paper's Korean rule and BVQA-en


@pytest.mark.parametrize(("pred", "gold"), [
    ("네", "네"), ("예", "네"), ("yes", "네"), ("Yes.", "네"), ("네.", "yes"),
    ("아니요", "아니요"), ("아니오", "아니요"), ("no", "아니요"), ("아뇨.", "no"),
])
def test_korean_yes_no_variants_count_alike(pred: str, gold: str) -> None:
    assert score_exact_ko([(item("1", [gold], lang="ko"), pred)])["score"] == 1.0


@pytest.mark.parametrize(("pred", "gold"), [("네", "아니요"), ("예요", "네"), ("빨간색이에요", "빨간색")])
def test_korean_exact_match_misses(pred: str, gold: str) -> None:
    assert score_exact_ko([(item("1", [gold], lang="ko"), pred)])["score"] == 0.0


@pytest.mark.parametrize(("pred", "gold", "hit"), [
    ("It is red.", "red", True), ("RED", "red", True), ("blue", "red", False),
    ("not sure", "no", True),  # plain substring, as the paper's script does
    ("two", "2", False),
])
def test_bvqa_en_containment(pred: str, gold: str, hit: bool) -> None:
    assert contains_match(pred, gold) is hit


def test_contains_score_reports_exact_match_too() -> None:
    s = score_contains([(item("1", ["red"]), "It is red."), (item("2", ["red"]), "red")])
    assert s["score"] == 1.0 and s["exact_match"] == 0.5


# ---------------------------------------------------------------- POPE


@pytest.mark.parametrize(("text", "parsed"), [
    ("Yes", "yes"), ("Yes, there is a dog.", "yes"), ("No", "no"), ("No, there is not.", "no"),
    ("There is no dog in the image.", "no"), ("It is not there", "no"),
    ("Yes. There is no cat.", "yes"),  # only the first sentence counts
    ("NO", "yes"),  # LLaVA's word check is case-sensitive
    ("Maybe", "yes"),  # anything without a negative is a yes
    ("네", "yes"), ("네, 있어요.", "yes"), ("아니요", "no"), ("아니오.", "no"), ("아뇨!", "no"),
    ("공이 없어요", "no"), ("없습니다", "no"), ("아닙니다", "no"),
    ("是", "yes"), ("没有", "no"),
])
def test_pope_answer_parsing(text: str, parsed: str) -> None:
    assert pope_answer(text) == parsed


def test_pope_metrics_by_hand() -> None:
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "no"]
    preds = ["yes", "yes", "no", "yes", "no", "no", "no", "no"]
    m = pope_metrics(labels, preds)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 4, 1)
    assert m["accuracy"] == 6 / 8
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == 3 / 8  # on predictions, as LLaVA computes it


def test_pope_all_no_has_zero_precision_not_an_error() -> None:
    m = pope_metrics(["yes", "no"], ["no", "no"])
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["yes_ratio"] == 0.0


def test_pope_score_averages_f1_over_categories() -> None:
    pairs = [(item("1", ["yes"], "random"), "Yes"), (item("2", ["no"], "random"), "No"),
             (item("3", ["yes"], "adversarial"), "Yes"), (item("4", ["no"], "adversarial"), "Yes")]
    s = score_pope(pairs)
    assert s["per_category"]["random"]["f1"] == 1.0
    assert s["per_category"]["adversarial"]["f1"] == pytest.approx(2 / 3)
    assert s["score"] == pytest.approx((1 + 2 / 3) / 2)
    assert s["pooled"]["n"] == 4 and s["metric"] == "F1"


# ---------------------------------------------------------------- MMBench

KO_OPTIONS = {"A": "빨간색", "B": "파란색", "C": "초록색", "D": "흰색"}
EN_OPTIONS = {"A": "red", "B": "blue", "C": "green", "D": "white"}


@pytest.mark.parametrize(("text", "choice"), [
    ("B", "B"), ("B입니다", "B"), ("B입니다.", "B"), ("정답은 B입니다", "B"), ("정답은 B입니다.", "B"),
    ("정답: (B)", "B"), ("답은 B", "B"), ("B번", "B"), ("B번입니다", "B"), ("옵션 B", "B"), ("(B) 파란색", "B"),
    ("B. 파란색", "B"), ("**B**", "B"), ("Ｂ", "B"), ("Ⓑ", "B"), ("B 입니다", "B"),
    ("A와 B 중에서 정답은 B입니다", "B"),  # the answer phrase wins over a mention
    ("파란색이에요", "B"),  # option text
    ("모르겠어요", None), ("A 또는 B", None), ("", None),
])
def test_choice_extraction_korean(text: str, choice: str | None) -> None:
    assert extract_choice(text, KO_OPTIONS) == choice


@pytest.mark.parametrize(("text", "choice"), [
    ("C", "C"), ("The answer is C.", "C"), ("Answer: D", "D"), ("C) green", "C"), ("I think C", "C"),
    ("A red one", "A"),  # the article "A" is not a choice; the option text "red" is
    ("It is green.", "C"), ("A", "A"), ("A or B", None), ("purple", None),
])
def test_choice_extraction_english(text: str, choice: str | None) -> None:
    assert extract_choice(text, EN_OPTIONS) == choice


def test_option_text_prefers_the_longest_match() -> None:
    assert extract_choice("dark blue", {"A": "blue", "B": "dark blue"}) == "B"


def _rotations(g: int, answers: list[str], preds: list[str], category: str = "colour") -> list:
    return [(item(str(g + k * 1_000_000), [a], category, g_index=g, options=EN_OPTIONS), p)
            for k, (a, p) in enumerate(zip(answers, preds, strict=True))]


def test_circular_eval_needs_every_rotation() -> None:
    pairs = _rotations(0, ["A", "D", "C", "B"], ["A", "D", "C", "B"])  # all right
    pairs += _rotations(1, ["B", "A", "D", "C"], ["B", "A", "D", "A"], "count")  # one rotation wrong
    pairs += _rotations(2, ["C", "B", "A", "D"], ["I don't know"] * 4, "count")  # never extracted
    s = score_mmbench(pairs)
    assert s["n"] == 3 and s["rows"] == 12
    assert s["score"] == pytest.approx(1 / 3)
    assert s["vanilla_accuracy"] == pytest.approx(2 / 3)  # first passes: 0 and 1 right, 2 wrong
    assert s["unextracted"] == 4
    assert s["per_type"] == {"colour": 1.0, "count": 0.0}


# ---------------------------------------------------------------- answer language


@pytest.mark.parametrize(("text", "lang"), [
    ("빨간색이에요", "ko"), ("red", "en"), ("红色", "zh"), ("2", NEUTRAL), ("B", NEUTRAL),
    ("B입니다", "ko"), ("네", "ko"), ("The ball 공", "en"), ("", NEUTRAL),
])
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_language_rate_leaves_neutral_answers_out() -> None:
    rate = language_rate([("ko", "빨간색"), ("ko", "red"), ("ko", "3"), ("en", "red"), ("en", "B")])
    assert rate["judged"] == 3 and rate["neutral"] == 2 and rate["in_language"] == 2
    assert rate["rate"] == pytest.approx(2 / 3)
    assert language_rate([("ko", "3")])["rate"] is None
