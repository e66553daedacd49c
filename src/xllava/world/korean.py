"""Korean particle (조사) selection from the final consonant (받침) of the preceding word.

Korean particles come in pairs chosen by whether the previous syllable ends in a consonant:
공을 / 상자를. The final consonant is read straight from the Hangul syllable's Unicode code point
(U+AC00 + (initial*21 + medial)*28 + final). Digits are read by their Sino-Korean reading
(1 일, 2 이, 3 삼, 10 십, ...), Latin words by a small pronunciation heuristic.
"""

from __future__ import annotations

import unicodedata

_HANGUL_FIRST = 0xAC00
_HANGUL_LAST = 0xD7A3
_RIEUL = 8  # index of ㄹ among the 28 finals (0 = no final consonant)

# Final-consonant index of each digit's Sino-Korean reading: 영(ㅇ) 일(ㄹ) 이 삼(ㅁ) 사 오 육(ㄱ) 칠(ㄹ) 팔(ㄹ) 구
_DIGIT_FINAL = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}
# Powers of ten read when a number ends in zeros: 십(ㅂ) 백(ㄱ) 천(ㄴ) 만(ㄴ)
_TENS_FINAL = {1: 17, 2: 1, 3: 4, 4: 4}
# Latin word endings that are pronounced with a final consonant (book 북, ten 텐, ball 볼 -> ㄹ).
_LATIN_CONSONANT_FINAL = set("bcdgkmnptl")

# Each pair: (form after a consonant, form after a vowel).
PAIRS: list[tuple[str, str]] = [
    ("을", "를"),
    ("이", "가"),
    ("은", "는"),
    ("과", "와"),
    ("으로", "로"),
    ("이에요", "예요"),
    ("이랑", "랑"),
    ("아", "야"),
]
_LOOKUP = {form: pair for pair in PAIRS for form in pair}


def nfc(text: str) -> str:
    """All Korean text the world writes goes through here (composed syllables, never jamo)."""
    return unicodedata.normalize("NFC", text)


def final_consonant(word: str) -> int:
    """Index (0-27) of the final consonant of the word's last pronounced syllable; 0 = none."""
    word = nfc(word).rstrip(" .,!?)]}\"'")
    if not word:
        raise ValueError("empty word")
    last = word[-1]
    code = ord(last)
    if _HANGUL_FIRST <= code <= _HANGUL_LAST:
        return (code - _HANGUL_FIRST) % 28
    if last.isdigit():
        digits = word[len(word.rstrip("0123456789")):]
        zeros = len(digits) - len(digits.rstrip("0"))
        if zeros and digits.strip("0"):  # 10, 200, 3000: read the power of ten
            return _TENS_FINAL.get(zeros, 4)
        return _DIGIT_FINAL[last]
    if last.isascii() and last.isalpha():
        low = word.lower()
        if low.endswith(("l", "le")):
            return _RIEUL
        return 1 if low[-1] in _LATIN_CONSONANT_FINAL else 0
    return 0


def has_batchim(word: str) -> bool:
    return final_consonant(word) != 0


def particle(word: str, form: str) -> str:
    """The correct form of the particle given by either of its forms (`particle("공", "를") == "을"`)."""
    try:
        after_consonant, after_vowel = _LOOKUP[form]
    except KeyError:
        raise ValueError(f"unknown particle {form!r}; known: {sorted(_LOOKUP)}") from None
    final = final_consonant(word)
    if after_consonant == "으로":  # 로 after a vowel and after ㄹ: 별로, 상자로; 으로 otherwise: 공으로
        return after_vowel if final in (0, _RIEUL) else after_consonant
    return after_consonant if final else after_vowel


def josa(word: str, form: str) -> str:
    """The word followed by the correct particle: josa("공", "를") == "공을"."""
    return nfc(word + particle(word, form))
