"""The world's vocabulary: every value a scene can take, with its words in en, ko and zh.

Explicit tables rather than generated words, so every surface form can be read and checked by a
speaker. The canonical id of each value is its English word; Korean and Chinese are looked up by it.
Answer words (`answer`) are the single canonical form the benchmark expects; other forms (adjectives,
counters, measure words) only appear inside sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

from xllava.datagen.prompts import SHORT_ANSWER_INSTRUCTION  # noqa: F401  (the world's questions carry it)

LANGUAGES = ("en", "ko", "zh")
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Kind:
    """An object kind. `shape` names the icon the renderer draws; the icons are chosen to be
    distinct at 16 px: filled circle, square, triangle on a trunk, house, star, diamond."""

    en: str
    en_plural: str
    ko: str
    ko_counter: str  # Korean counting classifier: 나무 두 그루, 집 두 채, otherwise 개
    zh: str
    zh_measure: str  # Chinese measure word: 一棵树, 一座房子, 一颗星星, 一只风筝
    shape: str


KINDS: dict[str, Kind] = {
    "ball": Kind("ball", "balls", "공", "개", "球", "个", "circle"),
    "box": Kind("box", "boxes", "상자", "개", "盒子", "个", "square"),
    "tree": Kind("tree", "trees", "나무", "그루", "树", "棵", "tree"),
    "house": Kind("house", "houses", "집", "채", "房子", "座", "house"),
    "star": Kind("star", "stars", "별", "개", "星星", "颗", "star"),
    "kite": Kind("kite", "kites", "연", "개", "风筝", "只", "diamond"),
}


@dataclass(frozen=True)
class Colour:
    en: str
    ko: str  # answer / noun form: 빨간색
    ko_adj: str  # modifier before a noun: 빨간 공
    zh: str  # 红色 (used as 红色的球 inside sentences)
    rgb: RGB


# Saturated, mutually distant colours; each differs from every background (TIMES) by >= 70 in some
# channel, and every object also gets a dark outline, so none can vanish into the background.
COLOURS: dict[str, Colour] = {
    "red": Colour("red", "빨간색", "빨간", "红色", (225, 30, 30)),
    "blue": Colour("blue", "파란색", "파란", "蓝色", (30, 70, 235)),
    "green": Colour("green", "초록색", "초록색", "绿色", (20, 165, 40)),
    "yellow": Colour("yellow", "노란색", "노란", "黄色", (250, 220, 0)),
    "purple": Colour("purple", "보라색", "보라색", "紫色", (150, 40, 200)),
    "white": Colour("white", "흰색", "하얀", "白色", (255, 255, 255)),
}


@dataclass(frozen=True)
class Size:
    en: str
    ko: str  # modifier: 큰 / 작은
    ko_pred: str  # predicate: 커요 / 작아요
    zh: str  # 大 / 小 (红色的大球)
    scale: float  # fraction of the grid cell the icon fills


SIZES: dict[str, Size] = {
    "big": Size("big", "큰", "커요", "大", 0.85),
    "small": Size("small", "작은", "작아요", "小", 0.5),
}


@dataclass(frozen=True)
class Position:
    en: str  # answer-like name: "top left"
    en_phrase: str  # "at the top left"
    ko: str  # 왼쪽 위 (takes 에: 왼쪽 위에)
    zh: str  # 左上角


# POSITIONS[row][col] for the 3x3 grid. The edge middles are 위쪽/아래쪽 in Korean and 正上方/正下方
# in Chinese so that they never read like the relation answers 위/아래, 上面/下面.
POSITIONS: list[list[Position]] = [
    [
        Position("top left", "at the top left", "왼쪽 위", "左上角"),
        Position("top", "at the top", "위쪽", "正上方"),
        Position("top right", "at the top right", "오른쪽 위", "右上角"),
    ],
    [
        Position("left", "on the left", "왼쪽", "左边"),
        Position("center", "in the center", "가운데", "中间"),
        Position("right", "on the right", "오른쪽", "右边"),
    ],
    [
        Position("bottom left", "at the bottom left", "왼쪽 아래", "左下角"),
        Position("bottom", "at the bottom", "아래쪽", "正下方"),
        Position("bottom right", "at the bottom right", "오른쪽 아래", "右下角"),
    ],
]
GRID_SIZE = 3


@dataclass(frozen=True)
class TimeOfDay:
    en: str
    ko: str
    zh: str  # answer: 早上
    zh_noun: str  # inside a sentence: 一个下雨的早晨
    background: RGB
    bright: bool


TIMES: dict[str, TimeOfDay] = {
    "morning": TimeOfDay("morning", "아침", "早上", "早晨", (205, 185, 225), True),
    "day": TimeOfDay("day", "낮", "白天", "白天", (150, 200, 240), True),
    "evening": TimeOfDay("evening", "저녁", "傍晚", "傍晚", (235, 150, 90), False),
    "night": TimeOfDay("night", "밤", "夜晚", "夜晚", (20, 25, 60), False),
}


@dataclass(frozen=True)
class Weather:
    en: str  # answer and adjective: rainy
    ko: str  # answer: 비
    ko_adj: str  # modifier: 비 오는 밤
    zh: str  # answer: 雨天
    zh_adj: str  # modifier: 下雨的夜晚
    mood_en: str
    mood_ko: str
    mood_zh: str


WEATHERS: dict[str, Weather] = {
    "sunny": Weather("sunny", "맑음", "맑은", "晴天", "晴朗的",
                     "cheerful and warm", "밝고 따뜻한", "愉快而温暖"),
    "cloudy": Weather("cloudy", "흐림", "흐린", "阴天", "多云的",
                      "calm and a little grey", "차분하고 조금 흐릿한", "平静而有点灰暗"),
    "rainy": Weather("rainy", "비", "비 오는", "雨天", "下雨的",
                     "quiet and gloomy", "조용하고 쓸쓸한", "安静而阴郁"),
    "snowy": Weather("snowy", "눈", "눈 오는", "雪天", "下雪的",
                     "peaceful and cold", "평화롭고 추운", "宁静而寒冷"),
}


@dataclass(frozen=True)
class Light:
    en: str
    ko: str  # modifier: 밝은
    ko_pred: str  # 밝아요
    zh: str


# Light is derived, never sampled: morning and day are bright, evening and night dim.
LIGHTS: dict[str, Light] = {
    "bright": Light("bright", "밝은", "밝아요", "明亮"),
    "dim": Light("dim", "어두운", "어두워요", "昏暗"),
}


@dataclass(frozen=True)
class Direction:
    """Where a subject is relative to a reference object (the relation question's answer)."""

    en: str  # answer: left
    en_phrase: str  # "to the left of"
    ko: str  # 왼쪽
    zh: str  # 左边


DIRECTIONS: dict[str, Direction] = {
    "left": Direction("left", "to the left of", "왼쪽", "左边"),
    "right": Direction("right", "to the right of", "오른쪽", "右边"),
    "above": Direction("above", "above", "위", "上面"),
    "below": Direction("below", "below", "아래", "下面"),
}

YES_NO: dict[str, dict[str, str]] = {
    "yes": {"en": "yes", "ko": "네", "zh": "是"},
    "no": {"en": "no", "ko": "아니요", "zh": "否"},
}

# Stage-1 (alignment) prompts; one is picked per record.
CAPTION_PROMPTS: dict[str, list[str]] = {
    "en": ["Describe the image briefly.", "What does this picture show?", "Give a short description of the image."],
    "ko": ["이미지를 간단히 설명해 주세요.", "이 그림에는 무엇이 있나요?", "이미지를 짧게 묘사해 주세요."],
    "zh": ["请简要描述这张图片。", "这张图片里有什么？", "请简单介绍一下这张图片。"],
}

EN_NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
KO_NATIVE_NUMBERS = ["영", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉"]  # before counters
ZH_NUMBERS = ["零", "一", "两", "三", "四", "五", "六", "七", "八", "九"]  # 两 before measure words


def answer_word(category_value: str, lang: str) -> str:
    """The canonical one-word answer for a language-neutral value id (any table above, or a digit)."""
    if category_value.isdigit():
        return category_value
    for table in (COLOURS, KINDS, DIRECTIONS, TIMES, WEATHERS):
        if category_value in table:
            return getattr(table[category_value], lang)
    if category_value in YES_NO:
        return YES_NO[category_value][lang]
    raise KeyError(f"no answer word for {category_value!r}")
