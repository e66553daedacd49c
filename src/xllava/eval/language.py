"""Which language an answer is written in, by script: the "answer in the question's language" rate.

A bilingual model's failure that accuracy hides is answering a Korean question in English (or the
reverse). Script counting is enough to see it for ko/en/zh and needs no language-ID model: Hangul
syllables and jamo are Korean, Han characters Chinese, Latin letters English. An answer with no
letters at all ("2", "B", "3.5") is *neutral*: it is counted apart and left out of the rate, so a
benchmark of digit answers does not read as 0% or 100% in-language.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

NEUTRAL = "neutral"


def _script(ch: str) -> str | None:
    code = ord(ch)
    if 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "ko"
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF:
        return "zh"
    if ch.isascii() and ch.isalpha():
        return "en"
    return None


def detect_language(text: str, single_letter_neutral: bool = True) -> str:
    """"ko", "en", "zh" by majority of script characters, or NEUTRAL when there are none.

    A lone Latin letter (an option letter "B", or "B입니다" minus its Hangul) says nothing about the
    language, so by default single-letter Latin runs do not count."""
    text = unicodedata.normalize("NFC", text)
    counts = {"ko": 0, "en": 0, "zh": 0}
    run = 0
    for ch in text + " ":
        script = _script(ch)
        if script == "en":
            run += 1
            continue
        if run:  # a finished run of Latin letters
            if run > 1 or not single_letter_neutral:
                counts["en"] += run
            run = 0
        if script:
            counts[script] += 1
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else NEUTRAL


def language_rate(pairs: Iterable[tuple[str, str]]) -> dict:
    """pairs: (question language, answer text). The share of non-neutral answers in that language."""
    n = same = neutral = 0
    for lang, answer in pairs:
        n += 1
        found = detect_language(answer)
        if found == NEUTRAL:
            neutral += 1
        elif found == lang:
            same += 1
    judged = n - neutral
    return {
        "rate": same / judged if judged else None,
        "in_language": same,
        "judged": judged,
        "neutral": neutral,
        "protocol": "script majority (Hangul=ko, Han=zh, Latin=en); answers without letters are neutral "
        "and excluded",
    }
