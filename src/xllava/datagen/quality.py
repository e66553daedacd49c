"""Quality gates on the teacher's items: language by script, no leaks or refusals, turn counts, duplicates.

An item is one conversation of the teacher's answer (in every target language). A rejected item keeps
its reason and stays in the store; only accepted items reach the training set. The checks are cheap
and deterministic, and each one names what it caught (`wrong_language:ko`, `mentions_annotations`,
...), so the run summary can count rejections per reason. A field's language is judged by the script
of its letters (Hangul for ko, Han for zh, Latin for en ...): teachers drift back to English or mix
scripts, and a script check catches that without a language-ID model.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from xllava.datagen.config import QualityConfig

_SCRIPTS: dict[str, str] = {  # regex character classes
    "latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff",
    "hangul": "\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\ud7b0-\ud7ff",
    "han": "\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0002fa1f",
    "kana": "\u3040-\u30ff",
    "cyrillic": "\u0400-\u04ff",
    "arabic": "\u0600-\u06ff",
    "devanagari": "\u0900-\u097f",
    "thai": "\u0e00-\u0e7f",
}
LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    **{lang: ("latin",) for lang in ("en", "fr", "de", "es", "it", "pt", "vi", "nl", "id", "tr")},
    "ko": ("hangul",), "zh": ("han",), "zh-Hant": ("han",), "ja": ("kana", "han"),
    "ru": ("cyrillic",), "uk": ("cyrillic",), "ar": ("arabic",), "hi": ("devanagari",), "th": ("thai",),
}

_LEAKS = re.compile(
    r"annotat|bounding box|\bbbox|\bcoordinates?\b|object list|scene graph|as an ai\b|language model"
    r"|바운딩 박스|주석|좌표|AI로서|인공지능으로서|언어 모델"
    r"|标注|边界框|坐标|作为一?个?\s*AI|作为人工智能|语言模型",
    re.IGNORECASE,
)
_REFUSALS = re.compile(
    r"\bi'?m sorry\b|\bi am sorry\b|\bi (?:cannot|can't|can not|am unable to)\b|\bunable to (?:help|assist|comply)"
    r"|죄송합니다|죄송해요|도와드릴 수 없|답변할 수 없"
    r"|抱歉|对不起|我无法|我不能",
    re.IGNORECASE,
)


_LETTER = re.compile(r"[^\W\d_]")  # a letter of any script (marks such as Thai vowels aside)


@lru_cache(maxsize=64)
def _script_pattern(lang: str) -> re.Pattern[str] | None:
    scripts = LANGUAGE_SCRIPTS.get(lang)
    return re.compile("[" + "".join(_SCRIPTS[s] for s in scripts) + "]") if scripts else None


def script_ratio(text: str, lang: str) -> float | None:
    """Share of the letters of `text` written in `lang`'s script; None without letters or script table."""
    pattern = _script_pattern(lang)
    letters = len(_LETTER.findall(text))
    if pattern is None or not letters:  # "3" is a fine answer in every language
        return None
    return min(1.0, len(pattern.findall(text)) / letters)


def _fields(item: dict) -> list[tuple[str, str, str]]:
    """(role, lang, text) of every field of an item."""
    return [(role, lang, text) for turn in item["turns"] for role in ("question", "answer")
            for lang, text in turn[role].items()]


def check_item(item: dict, task: str, cfg: QualityConfig) -> str | None:
    """The reason an item is rejected, or None when it passes."""
    turns = item.get("turns") or []
    if not turns:
        return "no_turns"
    if task == "conversation" and len(turns) != cfg.conversation_turns:
        return f"turn_count:{len(turns)}"
    for role, lang, text in _fields(item):
        if not text.strip():
            return f"empty_{role}:{lang}"
        ratio = script_ratio(text, lang)
        if ratio is not None and ratio < cfg.min_script_ratio:
            return f"wrong_language:{lang}"
        if _LEAKS.search(text):
            return "mentions_annotations"
        if _REFUSALS.search(text):
            return "refusal"
    languages = list(turns[0]["question"])
    for lang in languages:
        questions = [_normalise(t["question"][lang]) for t in turns]
        if len(set(questions)) != len(questions):
            return "duplicate_turn"
    return None


_NOT_WORD = re.compile(r"[\W_]+")


def _normalise(text: str) -> str:
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def signature(item: dict) -> str:
    """The item's text, normalised, for duplicate detection (every language, questions and answers)."""
    return "|".join(_normalise(text) for _, _, text in _fields(item))


def _grams(text: str) -> set[str]:
    return {text[i : i + 3] for i in range(len(text) - 2)} or {text}


class DuplicateGate:
    """The items kept so far, for one image: `duplicate` when a signature equals a kept one,
    `near_duplicate` when its trigram Jaccard with one reaches the threshold. Each kept item's
    trigrams are computed once (recomputing them per comparison made the check quadratic in work)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.kept: set[str] = set()
        self.kept_grams: list[set[str]] = []

    def reason(self, sig: str) -> str | None:
        if sig in self.kept:
            return "duplicate"
        grams = _grams(sig)
        for other in self.kept_grams:
            if len(grams & other) / len(grams | other) >= self.threshold:
                return "near_duplicate"
        return None

    def keep(self, sig: str) -> None:
        self.kept.add(sig)
        self.kept_grams.append(_grams(sig))


def gate_items(answer: dict, task: str, cfg: QualityConfig) -> list[dict]:
    """Every conversation of a parsed answer with `rejected` set to a reason or None (duplicates are
    judged against the accepted items before them)."""
    items, accepted = [], DuplicateGate(cfg.near_duplicate_jaccard)
    for conversation in answer["conversations"]:
        reason = check_item(conversation, task, cfg)
        if reason is None:
            sig = signature(conversation)
            reason = accepted.reason(sig)
            if reason is None:
                accepted.keep(sig)
        items.append({"turns": conversation["turns"], "rejected": reason})
    return items
