"""POPE: reading yes/no from a free-form answer, and the metrics per category.

Two modes:
- official: LLaVA-1.5's eval_pope rule, to the letter: keep the text before the first '.', drop
  commas, split on single spaces; the words 'No', 'not' or 'no' make a no, anything else a yes
  (so "NO" and every Korean or Chinese answer read as yes).
- extended: the same rule for answers without Hangul or Han characters (English answers score
  exactly as in official mode); for Korean and Chinese answers the first sentence (split on '.', '。',
  '!', '?' and their full-width forms) is read for its polarity:
  * Korean: a leading 네/예/응 is yes and a leading 아니요/아니오/아뇨/아니 is no; otherwise the
    negators are counted (없-, 않-, 못, a lone 안, 아니-/아닌/아닙-) and an odd count is no, so
    "보이지 않습니다" and "안 보입니다" are no while "없지 않습니다" (a double negative) is yes;
  * Chinese: 不/没/否/无 make a no, except inside 不过 ('but') and 不仅 ('not only').

Positive = yes; the yes-ratio is over predictions (as LLaVA prints it); the headline is the F1
averaged over the categories (adversarial, popular, random).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence

from xllava.eval.items import EvalItem
from xllava.eval.language import language_rate

OFFICIAL_PROTOCOL = (
    "official: POPE as LLaVA-1.5's eval_pope.py: text before the first '.', commas dropped, split on "
    "spaces; 'No'/'not'/'no' among the words = no, anything else yes; positive = yes; yes-ratio over "
    "predictions; headline F1 averaged over categories"
)
EXTENDED_PROTOCOL = (
    "extended: POPE with the official rule for answers without Hangul/Han; Korean answers by a leading "
    "네/아니요 or else the parity of negators (없/않/못/안/아니), Chinese by 不/没/否/无 (not in 不过/不仅); "
    "metrics as official"
)

_NO_EN = {"No", "not", "no"}  # case-sensitive, as in LLaVA's script
_CJK = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_SENTENCE_END = re.compile(r"[.。!?！？]")
_KO_YES = ("네", "예", "응", "yes", "Yes")
_KO_NO = ("아니요", "아니오", "아뇨", "아니", "no", "No")
_KO_NEGATORS = re.compile(r"없|않|못|아니|아닌|아닙|아녜")
_ZH_NOT_NEGATIVE = ("不过", "不仅", "不但")
_ZH_NEGATORS = ("不", "没", "否", "无")
_EDGE = " \t\n,，、'\"“”‘’~…*()（）[]"


def pope_answer_official(text: str) -> str:
    """LLaVA-1.5's rule, character for character."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if any(w in _NO_EN for w in words) else "yes"


def _korean(sentence: str) -> str:
    words = [w.strip(_EDGE) for w in sentence.split()]
    words = [w for w in words if w]
    if words and words[0] in _KO_YES:
        return "yes"
    if words and words[0].startswith(_KO_NO):
        return "no"
    count = len(_KO_NEGATORS.findall(sentence))
    count += sum(1 for w in words if w == "안")  # "안 보입니다": the short negation before a verb
    return "no" if count % 2 else "yes"


def _chinese(sentence: str) -> str:
    for word in _ZH_NOT_NEGATIVE:
        sentence = sentence.replace(word, "")
    return "no" if any(mark in sentence for mark in _ZH_NEGATORS) else "yes"


def pope_answer(text: str, mode: str = "extended") -> str:
    """'yes' or 'no' from a free-form answer, by the mode's rule (see the module doc)."""
    if mode == "official" or not _CJK.search(text):
        return pope_answer_official(text)
    text = unicodedata.normalize("NFC", text).strip()
    first = _SENTENCE_END.split(text, maxsplit=1)[0]
    return _korean(first) if _HANGUL.search(first) else _chinese(first)


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


def score_pope(pairs: Sequence[tuple[EvalItem, str]], mode: str = "official") -> dict:
    by_category: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    labels, parsed = [], []
    for item, pred in pairs:
        if not item.answers:
            raise ValueError(f"question {item.question_id} has no gold answer")
        gold, answer = item.answers[0], pope_answer(pred, mode)
        labels.append(gold)
        parsed.append(answer)
        by_category[item.category or "all"][0].append(gold)
        by_category[item.category or "all"][1].append(answer)
    categories = {c: pope_metrics(g, p) for c, (g, p) in sorted(by_category.items())}
    return {
        "benchmark": "pope",
        "mode": mode,
        "protocol": OFFICIAL_PROTOCOL if mode == "official" else EXTENDED_PROTOCOL,
        "metric": "F1",
        "n": len(labels),
        "score": sum(m["f1"] for m in categories.values()) / len(categories) if categories else 0.0,
        "pooled": pope_metrics(labels, parsed),
        "per_category": categories,
        "per_type": {c: m["f1"] for c, m in categories.items()},
        "language_rate": language_rate((item.lang, pred) for item, pred in pairs),
    }
