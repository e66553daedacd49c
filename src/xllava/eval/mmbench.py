"""MMBench: choosing the option letter from a free-form answer, and CircularEval.

Extraction is heuristic only (VLMEvalKit's "exact_matching" mode: no LLM, an unextractable answer
is wrong, never a random guess). It understands Korean phrasing, where particles attach to the
letter: "B", "B입니다", "정답은 B입니다", "답: (B)", "B번", "옵션 B", as well as "The answer is B",
"(B) red", "**B**" and full-width or circled letters (NFKC). In order:
1. the answer is just a letter (with brackets / punctuation);
2. an answer phrase ("정답은 X", "answer is X", "X입니다", "X번", ...) names exactly one option;
3. exactly one option letter stands alone (not inside a Latin word; a sentence-initial article "A"
   followed by a lower-case word other than or/and does not count);
4. exactly one option's text appears in the answer (the longest wins over options it contains),
   when the answer is at most twice as long as all options together.

CircularEval: the TSV holds each question once per rotation of its options (index + k * 1e6); a
question counts as correct only if every rotation is answered correctly.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

from xllava.eval.items import EvalItem
from xllava.eval.language import language_rate
from xllava.eval.loaders import CIRCULAR_STRIDE

PROTOCOL = (
    "MMBench CircularEval: a question is correct only if every option rotation is; choice extraction "
    "heuristic only (letter, answer phrases incl. Korean 정답은 X / X입니다 / X번, lone letter, option "
    "text), unextractable = wrong, no LLM and no random fallback"
)

_LETTER = r"\(?\[?\**([A-Z])\**\]?\)?"
_PHRASES = [
    re.compile(r"(?:정답|답변|답)\s*(?:은|는|:)?\s*(?:옵션\s*)?" + _LETTER),
    re.compile(r"(?i:(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*)" + _LETTER + r"(?![A-Za-z])"),
    re.compile(r"옵션\s*" + _LETTER),
    re.compile(r"(?<![A-Za-z])" + _LETTER + r"\s*(?:번|입니다|이에요|예요|이다|가\s*정답|이\s*정답|가\s*맞|이\s*맞)"),
]
_ALONE = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
_ARTICLE = re.compile(r"(?<![A-Za-z])([AI]) (?!(?:or|and|nor|vs)\b)[a-z]")  # "A red one", not "A or B"


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def extract_choice(prediction: str, options: dict[str, str]) -> str | None:
    """The option letter the prediction gives, or None when it cannot be told."""
    text = _normalise(prediction)
    letters = set(options)
    bare = text.strip(" .。:：)(][*'\"`")
    if bare in letters:
        return bare
    named = {m.group(1) for pattern in _PHRASES for m in pattern.finditer(text)} & letters
    if len(named) == 1:
        return named.pop()
    articles = {m.start(1) for m in _ARTICLE.finditer(text)}
    alone = {m.group(1) for m in _ALONE.finditer(text) if m.start(1) not in articles} & letters
    if len(alone) == 1:
        return alone.pop()
    if len(named) > 1 or len(alone) > 1:
        return None  # several letters named: ambiguous, never guessed
    low = text.casefold()
    if len(text) > 2 * sum(len(o) for o in options.values()):
        return None
    hits = {k: _normalise(v).casefold() for k, v in options.items() if _normalise(v).casefold() in low}
    longest = {k for k, v in hits.items() if not any(v != w and v in w for w in hits.values())}
    return longest.pop() if len(longest) == 1 else None


def score_mmbench(pairs: list[tuple[EvalItem, str]]) -> dict:
    groups: dict[int, list[bool]] = defaultdict(list)
    category: dict[int, str] = {}
    vanilla: list[bool] = []
    unextracted = 0
    for item, pred in pairs:
        choice = extract_choice(pred, item.extra["options"])
        unextracted += choice is None
        hit = choice is not None and bool(item.answers) and choice == item.answers[0]
        g = int(item.extra["g_index"])
        groups[g].append(hit)
        category[g] = item.category or "all"
        if int(item.question_id) < CIRCULAR_STRIDE:
            vanilla.append(hit)
    passed = {g: all(hits) for g, hits in groups.items()}
    per_type: dict[str, list[bool]] = defaultdict(list)
    for g, ok in passed.items():
        per_type[category[g]].append(ok)
    return {
        "benchmark": "mmbench",
        "protocol": PROTOCOL,
        "metric": "circular accuracy",
        "n": len(passed),
        "rows": len(pairs),
        "score": sum(passed.values()) / len(passed) if passed else 0.0,
        "vanilla_accuracy": sum(vanilla) / len(vanilla) if vanilla else 0.0,
        "unextracted": unextracted,
        "per_type": {c: sum(v) / len(v) for c, v in sorted(per_type.items())},
        "language_rate": language_rate((item.lang, pred) for item, pred in pairs),
    }
