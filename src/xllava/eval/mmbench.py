"""MMBench: choosing the option letter from a free-form answer, and CircularEval.

Two modes:
- official: VLMEvalKit's exact matching (`judge: exact_matching`, its `can_infer` as of commit
  e8e78f05): the letter test on the answer with .()[],:;!*# and braces turned into spaces, split
  on whitespace: exactly one option letter among the words, and among the last four of them;
  else one of VLMEvalKit's refusal sentences, or a lone word Z, gives Z; else "answer is X"; else
  exactly one option text inside the lower-cased answer, when the answer is at most twice as long as
  all options together. Anything else is Z, which is never right.
- extended: the reading below, which also understands Korean and Chinese phrasing.

Extended extraction is heuristic only (VLMEvalKit's "exact_matching" mode: no LLM, an unextractable answer
is wrong, never a random guess). It understands Korean phrasing, where particles attach to the
letter: "B", "B입니다", "정답은 B입니다", "답: (B)", "B번", "옵션 B", as well as "The answer is B",
"(B) red", "**B**" and full-width or circled letters (NFKC). In order:
1. the answer is just a letter (with brackets / punctuation);
2. an answer phrase ("정답은 X", "answer is X", "X입니다", "X번", ...) names exactly one option;
3. exactly one option letter stands alone (not inside a Latin word; an article "A" followed by a
   lower-case word does not count, except "A or", "A and", "A is", "A was" ...);
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

OFFICIAL_PROTOCOL = (
    "official: MMBench CircularEval with VLMEvalKit's exact matching (can_infer at e8e78f05: one option "
    "letter among the last four words, 'answer is X', else exactly one option text); unextracted = Z = "
    "wrong; a question is correct only if every rotation is"
)
EXTENDED_PROTOCOL = (
    "extended: MMBench CircularEval; choice extraction heuristic only (letter, answer phrases incl. "
    "Korean 정답은 X / X입니다 / X번, Chinese 答案是X, 'X is correct', lone letter, option text, full-width "
    "and circled letters), unextractable = wrong, no LLM and no random fallback"
)
PROTOCOL = OFFICIAL_PROTOCOL

# VLMEvalKit's refusal sentences, which its matcher reads as option Z (a protocol input, verbatim)
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_VERBOSE_ANSWER = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})


def can_infer(answer: str, options: dict[str, str]) -> str | None:
    """VLMEvalKit's exact matching (see the module doc): a letter, Z, or None when nothing is found
    (VLMEvalKit then records Z: wrong)."""
    answer = str(answer)
    letter = _infer_option(answer, options)
    return letter if letter else _infer_text(answer, options)


def _infer_option(answer: str, options: dict[str, str]) -> str | None:
    if "Failed to obtain answer via API" in answer:
        return None
    if any(refusal in answer for refusal in _REFUSALS):
        return "Z"
    words = [w.strip() for w in answer.translate(_SEPARATORS).split()]
    present = [c for c in options if c in words]
    if len(present) == 1:
        for c in options:
            if c in words and words.index(c) > len(words) - 5:
                return c
    elif not present and "Z" in words:
        return "Z"
    match = _VERBOSE_ANSWER.search(answer)
    if match and match.group(1).upper() in options:
        return match.group(1).upper()
    return None


def _infer_text(answer: str, options: dict[str, str]) -> str | None:
    low = answer.lower()
    if len(low) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = [c for c, text in options.items() if str(text).lower() in low]
    return found[0] if len(found) == 1 else None

_LETTER = r"\(?\[?\**([A-Z])\**\]?\)?"
_PHRASES = [
    re.compile(r"(?:정답|답변|답)\s*(?:은|는|:)?\s*(?:옵션\s*)?" + _LETTER),
    re.compile(r"(?i:(?:correct\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*)" + _LETTER + r"(?![A-Za-z])"),
    re.compile(r"옵션\s*" + _LETTER),
    re.compile(r"(?:答案|选项|正确答案)\s*(?:是|为|:)?\s*" + _LETTER),
    re.compile(r"(?<![A-Za-z])" + _LETTER + r"\s+(?:is|was)\s+(?:the\s+)?(?:correct|right|best|answer)\b"),
    re.compile(r"(?<![A-Za-z])" + _LETTER + r"\s*(?:번|입니다|이에요|예요|이다|가\s*정답|이\s*정답|가\s*맞|이\s*맞)"),
]
_ALONE = re.compile(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])")
# "A red one" is an article; "A or B", "A is correct" name the option
_ARTICLE = re.compile(r"(?<![A-Za-z])([AI]) (?!(?:or|and|nor|vs|is|was|would|should|seems|looks)\b)[a-z]")


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


def choose(prediction: str, options: dict[str, str], mode: str) -> str | None:
    return can_infer(prediction, options) if mode == "official" else extract_choice(prediction, options)


def score_mmbench(pairs: list[tuple[EvalItem, str]], mode: str = "official") -> dict:
    groups: dict[int, list[bool]] = defaultdict(list)
    category: dict[int, str] = {}
    vanilla: list[bool] = []
    unextracted = 0
    for item, pred in pairs:
        choice = choose(pred, item.extra["options"], mode)
        unextracted += choice is None or choice not in item.extra["options"]
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
        "mode": mode,
        "protocol": OFFICIAL_PROTOCOL if mode == "official" else EXTENDED_PROTOCOL,
        "metric": "circular accuracy",
        "n": len(passed),
        "rows": len(pairs),
        "score": sum(passed.values()) / len(passed) if passed else 0.0,
        "vanilla_accuracy": sum(vanilla) / len(vanilla) if vanilla else 0.0,
        "unextracted": unextracted,
        "per_type": {c: sum(v) / len(v) for c, v in sorted(per_type.items())},
        "language_rate": language_rate((item.lang, pred) for item, pred in pairs),
    }
