"""Scorers for the short-answer protocols: VQAv2, GQA, POPE, the paper's Korean exact match, BVQA-en
containment. Each `score_*` takes (item, prediction) pairs and returns a dict with the protocol named,
the headline `score` (0..1), per-type figures and the rate of answers in the question's language.
MMBench lives in mmbench.py, the judged benchmarks in judge.py."""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence

from xllava.eval import exact_match, vqa_eval
from xllava.eval.items import EvalItem
from xllava.eval.language import language_rate

Pairs = Sequence[tuple[EvalItem, str]]

GQA_PROTOCOL = (
    "GQA accuracy (LLaVA-1.5 + official eval.py): prediction with final periods stripped and lower-cased "
    "must equal the gold answer exactly (NFC, case-insensitive); no yes/네 merging"
)
CONTAINS_PROTOCOL = "BVQA-en (X-LLaVA): correct when the lower-cased gold answer is a substring of the prediction"
POPE_PROTOCOL = (
    "POPE (LLaVA-1.5 eval_pope): first sentence only, commas dropped; 'No'/'not'/'no' among its words "
    "(Korean: words beginning 아니/아닙/아뇨/없; Chinese: 不/没/否) means no, anything else yes; "
    "positive = yes; yes-ratio over predictions; headline F1 averaged over categories"
)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _result(benchmark: str, protocol: str, pairs: Pairs, hits: list[float], extra: dict | None = None) -> dict:
    per_type: dict[str, list[float]] = defaultdict(list)
    for (item, _), hit in zip(pairs, hits, strict=True):
        per_type[item.category or "all"].append(hit)
    return {
        "benchmark": benchmark,
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


def score_vqav2(pairs: Pairs) -> dict:
    hits = [vqa_eval.vqa_accuracy(pred, item.answers) for item, pred in pairs]
    return _result("vqav2", vqa_eval.PROTOCOL, pairs, hits)


# ---------------------------------------------------------------- GQA


def gqa_match(prediction: str, answer: str) -> bool:
    return _nfc(prediction).strip().rstrip(".").lower() == _nfc(answer).strip().lower()


def score_gqa(pairs: Pairs) -> dict:
    return _result("gqa", GQA_PROTOCOL, pairs, [float(gqa_match(p, _gold(i))) for i, p in pairs])


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


# ---------------------------------------------------------------- POPE

_NO_EN = {"No", "not", "no"}  # case-sensitive, as in LLaVA's script ("NO" reads as yes there too)
_NO_KO_PREFIXES = ("아니", "아닙", "아뇨", "없")
_NO_ZH = ("不", "没", "否")


def pope_answer(text: str) -> str:
    """'yes' or 'no' from a free-form answer, by LLaVA-1.5's rule plus Korean and Chinese negatives."""
    text = _nfc(text)
    for stop in (".", "。"):
        if stop in text:
            text = text.split(stop)[0]
    text = text.replace(",", "").replace("，", "")
    for word in text.split(" "):
        if word in _NO_EN:
            return "no"
        if word.strip("!?~…'\"").startswith(_NO_KO_PREFIXES):
            return "no"
    if any(mark in text for mark in _NO_ZH):
        return "no"
    return "yes"


def pope_metrics(labels: list[str], predictions: list[str]) -> dict:
    tp = sum(p == "yes" and g == "yes" for g, p in zip(labels, predictions, strict=True))
    fp = sum(p == "yes" and g == "no" for g, p in zip(labels, predictions, strict=True))
    tn = sum(p == "no" and g == "no" for g, p in zip(labels, predictions, strict=True))
    fn = sum(p == "no" and g == "yes" for g, p in zip(labels, predictions, strict=True))
    n = len(labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision, "recall": recall, "f1": f1,
        "yes_ratio": (tp + fp) / n if n else 0.0,
    }


def score_pope(pairs: Pairs) -> dict:
    by_category: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    labels, parsed = [], []
    for item, pred in pairs:
        gold, answer = _gold(item), pope_answer(pred)
        labels.append(gold)
        parsed.append(answer)
        by_category[item.category or "all"][0].append(gold)
        by_category[item.category or "all"][1].append(answer)
    categories = {c: pope_metrics(g, p) for c, (g, p) in sorted(by_category.items())}
    return {
        "benchmark": "pope",
        "protocol": POPE_PROTOCOL,
        "metric": "F1",
        "n": len(labels),
        "score": sum(m["f1"] for m in categories.values()) / len(categories) if categories else 0.0,
        "pooled": pope_metrics(labels, parsed),
        "per_category": categories,
        "per_type": {c: m["f1"] for c, m in categories.items()},
        "language_rate": language_rate((item.lang, pred) for item, pred in pairs),
    }


SCORERS: dict[str, Callable[[Pairs], dict]] = {
    "vqav2": score_vqav2,
    "gqa": score_gqa,
    "pope": score_pope,
    "exact-ko": score_exact_ko,
    "contains": score_contains,
}
