"""The spine's exact-match scorer, including the paper's Korean yes/no rule."""

from __future__ import annotations

import pytest

from xllava.eval.exact_match import is_match, majority_baseline, normalise, score


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [("네", "yes"), ("예", "네"), ("Yes.", "yes"), ("아니요", "no"), ("아니오", "아니요"), ("是", "yes"),
     ("  Red ", "red"), ("빨간색.", "빨간색"), ("2", "2"), ("左边。", "左边")],
)
def test_same_answers(prediction: str, answer: str) -> None:
    assert is_match(prediction, answer)


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [("네", "no"), ("빨간색이에요", "빨간색"), ("red ball", "red"), ("3", "2"), ("", "yes"), ("yes no", "yes")],
)
def test_different_answers(prediction: str, answer: str) -> None:
    assert not is_match(prediction, answer)


def test_nfc() -> None:
    assert normalise("\u1100\u1161\u11a8") == "각"


def test_score_per_type_and_baseline() -> None:
    records = [
        {"category": "exists", "answer": "yes", "prediction": "네"},
        {"category": "exists", "answer": "no", "prediction": "네"},
        {"category": "colour", "answer": "red", "prediction": "red"},
        {"category": "colour", "answer": "red", "prediction": "blue"},
        {"category": "colour", "answer": "blue", "prediction": "blue"},
    ]
    s = score(records)
    assert s["per_type"] == {"colour": pytest.approx(2 / 3), "exists": 0.5}
    assert s["accuracy"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert s["majority_baseline"] == {"exists": 0.5, "colour": pytest.approx(2 / 3)}
    assert "네" in s["protocol"]


def test_majority_baseline_merges_korean_yes() -> None:
    assert majority_baseline({"exists": ["네", "yes", "예", "아니요"]}) == {"exists": 0.75}
