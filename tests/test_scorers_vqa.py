"""VQAv2: the official answer processing and the leave-one-annotator-out soft score."""

from __future__ import annotations

import pytest

from xllava.eval.vqa_eval import process_gold, process_prediction, vqa_accuracy


@pytest.mark.parametrize(
    ("raw", "processed"),
    [
        ("Two", "2"),  # number words to digits
        ("none", "0"),
        ("ten dogs", "10 dogs"),
        ("the dog.", "dog"),  # articles dropped, final period removed
        ("A red ball", "red ball"),
        ("an apple", "apple"),
        ("dont", "don't"),  # contractions restored
        ("isnt it", "isn't it"),
        ("yes!", "yes"),  # punctuation inside text becomes a space, then collapses
        ("black-and-white", "black and white"),
        ("hello - world", "hello world"),  # next to a space: deleted
        ("3.5", "3.5"),  # a period before a digit stays
        ("5.", "5"),  # any other period goes (the original's look-behind never works)
        ("1,000", "1000"),
        ("Yes, it is", "yes it is"),
        ("  red\n", "red"),
        ("(left)", "left"),
        ("e.g.", "eg"),
    ],
)
def test_prediction_processing(raw: str, processed: str) -> None:
    assert process_prediction(raw) == processed


def test_word_tokenize_step_only_on_predictions() -> None:
    # EvalAI's tokenizer step (predictions) splits 's; annotator answers keep it
    assert process_prediction("the man's hat") == "man 's hat"
    assert process_gold("the man's hat") == "man's hat"
    assert process_gold("whats") == "what's"


def test_original_quirks_are_kept() -> None:
    assert process_gold("somebody'd") == "somebodyd"  # the official table maps this one backwards
    # re.UNICODE passed as the count argument: at most 32 periods are removed
    assert process_gold("." * 40) == "." * 8


@pytest.mark.parametrize(
    ("matches", "expected"),
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_soft_score_over_the_ten_subsets(matches: int, expected: float) -> None:
    # k matching annotators: dropping a match leaves k-1, dropping another leaves k, each capped at 3
    answers = ["dog"] * matches + ["cat"] * (10 - matches)
    assert vqa_accuracy("Dog.", answers) == pytest.approx(expected)


def test_normalisation_on_both_sides() -> None:
    answers = ["2", "two", "Two", "2 ", "two.", "3", "3", "3", "3", "3"]
    assert vqa_accuracy("two", answers) == 1.0
    assert vqa_accuracy("3", answers) == 1.0
    assert vqa_accuracy("2 dogs", answers) == 0.0


def test_korean_answers_are_compared_verbatim_after_punctuation() -> None:
    answers = ["네"] * 2 + ["예"] * 8  # the VQA protocol has no yes/네 merging
    assert vqa_accuracy("네.", answers) == pytest.approx(0.6)
    assert vqa_accuracy("예", answers) == 1.0


def test_needs_answers() -> None:
    with pytest.raises(ValueError):
        vqa_accuracy("dog", [])
