"""Noun phrases and small sentence pieces in en/ko/zh, shared by captions, questions and instructions.

Word order per language: en "a big red ball", ko "큰 빨간 공" (size, colour, noun), zh "一个红色的大球"
(number + measure word, colour 的, size + noun).
"""

from __future__ import annotations

from xllava.world.korean import josa, nfc
from xllava.world.lexicon import (
    COLOURS,
    EN_NUMBERS,
    KINDS,
    KO_NATIVE_NUMBERS,
    POSITIONS,
    SIZES,
    TIMES,
    WEATHERS,
    ZH_NUMBERS,
)
from xllava.world.scene import Atmosphere, SceneObject


def indefinite(obj: SceneObject, lang: str) -> str:
    """A full description: a big red ball / 큰 빨간 공 / 一个红色的大球."""
    kind, colour, size = KINDS[obj.kind], COLOURS[obj.colour], SIZES[obj.size]
    if lang == "en":
        return f"a {size.en} {colour.en} {kind.en}"
    if lang == "ko":
        return nfc(f"{size.ko} {colour.ko_adj} {kind.ko}")
    return f"一{kind.zh_measure}{colour.zh}的{size.zh}{kind.zh}"


def definite(obj: SceneObject, lang: str) -> str:
    """the big red ball / 큰 빨간 공 / 红色的大球."""
    if lang == "en":
        return "the " + indefinite(obj, "en")[2:]
    if lang == "ko":
        return indefinite(obj, "ko")
    kind, colour, size = KINDS[obj.kind], COLOURS[obj.colour], SIZES[obj.size]
    return f"{colour.zh}的{size.zh}{kind.zh}"


def coloured(colour: str, kind: str, lang: str, article: str = "the") -> str:
    """the red ball / 빨간 공 / 红色的球 (no size): how short-answer questions name objects."""
    if lang == "en":
        return f"{article} {COLOURS[colour].en} {KINDS[kind].en}"
    if lang == "ko":
        return nfc(f"{COLOURS[colour].ko_adj} {KINDS[kind].ko}")
    return f"{COLOURS[colour].zh}的{KINDS[kind].zh}"


def kind_word(kind: str, lang: str) -> str:
    return getattr(KINDS[kind], lang)


def position(row: int, col: int, lang: str) -> str:
    """at the top left / 왼쪽 위 / 左上角 (Korean callers add 에 or 에 있는)."""
    pos = POSITIONS[row][col]
    return {"en": pos.en_phrase, "ko": pos.ko, "zh": pos.zh}[lang]


def atmosphere(atm: Atmosphere, lang: str, article: bool = True) -> str:
    """a rainy night / 비 오는 밤 / 一个下雨的夜晚."""
    time, weather = TIMES[atm.time_of_day], WEATHERS[atm.weather]
    if lang == "en":
        return f"{'a ' if article else ''}{weather.en} {time.en}"
    if lang == "ko":
        return nfc(f"{weather.ko_adj} {time.ko}")
    return f"{'一个' if article else ''}{weather.zh_adj}{time.zh_noun}"


def count_phrase(kind: str, n: int, lang: str) -> str:
    """two balls / 공 두 개 / 两个球."""
    k = KINDS[kind]
    if lang == "en":
        return f"{EN_NUMBERS[n]} {k.en if n == 1 else k.en_plural}"
    if lang == "ko":
        return nfc(f"{k.ko} {KO_NATIVE_NUMBERS[n]} {k.ko_counter}")
    return f"{ZH_NUMBERS[n]}{k.zh_measure}{k.zh}"


def join_en(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def ko_subject(noun_phrase: str) -> str:
    return josa(noun_phrase, "이")


def ko_topic(noun_phrase: str) -> str:
    return josa(noun_phrase, "은")
