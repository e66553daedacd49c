"""Short-answer exact match, with the paper's rule that Korean 네/예 and English yes are one answer."""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict

PROTOCOL = (
    "exact match after NFC, case folding, trimming whitespace and final punctuation; "
    "yes = yes/네/예/是; no = no/아니요/아니오/아뇨/아니에요/아닙니다/否/不是 (X-LLaVA's Korean rule)"
)

_SAME = {
    "yes": "yes", "네": "yes", "예": "yes", "응": "yes", "是": "yes", "是的": "yes",
    "no": "no", "아니요": "no", "아니오": "no", "아뇨": "no", "아니에요": "no", "아니예요": "no",
    "아닙니다": "no", "아니야": "no", "아니": "no", "否": "no", "不是": "no", "不": "no",
}
_TRAILING = " \t\n.,!?。，！？、"


def normalise(answer: str) -> str:
    text = unicodedata.normalize("NFC", answer).strip().strip(_TRAILING).casefold()
    return _SAME.get(text, text)


def is_match(prediction: str, answer: str) -> bool:
    return normalise(prediction) == normalise(answer)


def majority_baseline(answers_by_category: dict[str, list[str]]) -> dict[str, float]:
    """Accuracy of always giving each category's most common answer."""
    out = {}
    for category, answers in answers_by_category.items():
        counts = Counter(normalise(a) for a in answers)
        out[category] = counts.most_common(1)[0][1] / len(answers) if answers else 0.0
    return out


def score(records: list[dict]) -> dict:
    """records: {category, answer, prediction}. Accuracy per category, their mean, and baselines."""
    hits: dict[str, list[bool]] = defaultdict(list)
    answers: dict[str, list[str]] = defaultdict(list)
    for r in records:
        hits[r["category"]].append(is_match(r["prediction"], r["answer"]))
        answers[r["category"]].append(r["answer"])
    per_type = {c: sum(v) / len(v) for c, v in sorted(hits.items())}
    return {
        "protocol": PROTOCOL,
        "n": len(records),
        "accuracy": sum(per_type.values()) / len(per_type) if per_type else 0.0,
        "per_type": per_type,
        "majority_baseline": majority_baseline(answers),
    }
