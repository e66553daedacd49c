"""Scorers for the short-answer protocols: VQAv2, GQA, POPE, the paper's Korean exact match, BVQA-en
containment. Each `score_*` takes (item, prediction) pairs and returns a dict with the protocol named,
the headline `score` (0..1), per-type figures and the rate of answers in the question's language.
Scorers of the public benchmarks take a `mode`: `official` (what the benchmark's own code computes) or
`extended` (xllava's multilingual reading). POPE lives in pope.py, MMBench in mmbench.py, the judged
benchmarks in judge.py."""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence

from xllava.eval import exact_match, vqa_eval
from xllava.eval.items import EvalItem
from xllava.eval.language import language_rate
from xllava.eval.pope import pope_answer, pope_metrics, score_pope

__all__ = ["SCORERS", "gqa_match", "pope_answer", "pope_metrics", "score_gqa", "score_pope", "score_vqav2"]

Pairs = Sequence[tuple[EvalItem, str]]

GQA_PROTOCOL = (
    "official: GQA accuracy as LLaVA-1.5's conversion and the official eval.py: the prediction with "
    "trailing periods stripped and lower-cased must equal the gold answer as written; balanced "
    "questions only; per structural and semantic type"
)
GQA_EXTENDED_PROTOCOL = (
    "extended: GQA accuracy after NFC, trimming and case folding both sides (trailing periods stripped "
    "from the prediction); no yes/네 merging"
)
CONTAINS_PROTOCOL = "BVQA-en (X-LLaVA): correct when the lower-cased gold answer is a substring of the prediction"


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _means(pairs: Pairs, hits: list[float], key: Callable[[EvalItem], str]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for (item, _), hit in zip(pairs, hits, strict=True):
        groups[key(item) or "all"].append(hit)
    return {c: sum(v) / len(v) for c, v in sorted(groups.items())}


def _result(benchmark: str, protocol: str, pairs: Pairs, hits: list[float], extra: dict | None = None,
            mode: str = "official") -> dict:
    per_type: dict[str, list[float]] = defaultdict(list)
    for (item, _), hit in zip(pairs, hits, strict=True):
        per_type[item.category or "all"].append(hit)
    return {
        "benchmark": benchmark,
        "mode": mode,
        "protocol": protocol,
        "metric": "accuracy",
        "n": len(hits),
        "score": sum(hits) / len(hits) if hits else 0.0,
        "per_type": {c: sum(v) / len(v) for c, v in sorted(per_type.items())},
        "language_rate": language_rate((item.lang, pred) for item, pred in pairs),
        **(extra or {}),
    }


def _gold(item: EvalItem) -> str:
    if not item.answers:
        raise ValueError(f"question {item.question_id} has no gold answer")
    return item.answers[0]


# ---------------------------------------------------------------- VQAv2


def score_vqav2(pairs: Pairs, mode: str = "official") -> dict:
    """Accuracy overall, per answer type (`per_type`) and per question type, as the official evaluator
    reports them (it rounds to two decimals of a percent; these are unrounded)."""
    hits = [vqa_eval.vqa_accuracy(pred, item.answers, mode) for item, pred in pairs]
    protocol = vqa_eval.OFFICIAL_PROTOCOL if mode == "official" else vqa_eval.EXTENDED_PROTOCOL
    return _result("vqav2", protocol, pairs, hits, {
        "per_question_type": _means(pairs, hits, lambda it: str(it.extra.get("question_type", "")))}, mode)


# ---------------------------------------------------------------- GQA


def gqa_prediction(text: str) -> str:
    """LLaVA-1.5's conversion of an answer for GQA's eval.py: trailing periods stripped, lower case."""
    return text.rstrip(".").lower()


def gqa_match(prediction: str, answer: str, mode: str = "extended") -> bool:
    if mode == "official":
        return gqa_prediction(prediction) == answer
    return _nfc(prediction).strip().rstrip(".").casefold() == _nfc(answer).strip().casefold()


def score_gqa(pairs: Pairs, mode: str = "official") -> dict:
    """Accuracy over the balanced questions (the loader drops the others), per structural type
    (`per_type`: query, verify, logical, choose, compare) and per semantic type."""
    hits = [float(gqa_match(p, _gold(i), mode)) for i, p in pairs]
    protocol = GQA_PROTOCOL if mode == "official" else GQA_EXTENDED_PROTOCOL
    return _result("gqa", protocol, pairs, hits, {
        "per_semantic_type": _means(pairs, hits, lambda it: str(it.extra.get("semantic", "")))}, mode)


# ---------------------------------------------------------------- the paper's Korean and BVQA-en rules


def contains_match(prediction: str, answer: str) -> bool:
    return _nfc(answer).strip().lower() in _nfc(prediction).lower()


def score_exact_ko(pairs: Pairs, benchmark: str = "short-ko") -> dict:
    hits = [float(exact_match.is_match(p, _gold(i))) for i, p in pairs]
    return _result(benchmark, "Korean exact match (X-LLaVA): " + exact_match.PROTOCOL, pairs, hits)


def score_contains(pairs: Pairs, benchmark: str = "short-en") -> dict:
    hits = [float(contains_match(p, _gold(i))) for i, p in pairs]
    exact = [float(exact_match.is_match(p, _gold(i))) for i, p in pairs]
    return _result(benchmark, CONTAINS_PROTOCOL, pairs, hits,
                   {"exact_match": sum(exact) / len(exact) if exact else 0.0})


SCORERS: dict[str, Callable[[Pairs], dict]] = {
    "vqav2": score_vqav2,
    "gqa": score_gqa,
    "pope": score_pope,
    "exact-ko": score_exact_ko,
    "contains": score_contains,
}
