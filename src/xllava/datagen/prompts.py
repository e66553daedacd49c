"""Versioned prompts: one template per task type, notes per target language, two seed examples per type.

X-LLaVA never published its GPT-4V prompts, so these are ours. The teacher receives the image, a
system prompt, the image's main-object list from the annotations (with relations for the location
type), the target languages, two seed examples of the task type and the output format. The prompt
version is part of every request key: editing a template means adding a version, never changing one
in place, so a store never mixes answers to two different prompts under one key.

Two lines of the user message are fixed so that a program can read them too (the embedded world
teacher does): `Task type: ... (id: TASK)` and `Target languages: CODE (Name), ...`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from xllava.datagen.selection import SelectedImage

LANGUAGE_NAMES = {
    "en": "English", "ko": "Korean", "zh": "Simplified Chinese", "zh-Hant": "Traditional Chinese",
    "ja": "Japanese", "fr": "French", "de": "German", "es": "Spanish", "it": "Italian",
    "pt": "Portuguese", "ru": "Russian", "ar": "Arabic", "hi": "Hindi", "th": "Thai", "vi": "Vietnamese",
}

LANGUAGE_NOTES = {
    "en": "plain, natural English.",
    "ko": "natural Korean in the polite 해요체 (…요) throughout; particles that match the final consonant "
          "(을/를, 이/가, 은/는); native counters (사과 세 개, 나무 두 그루).",
    "zh": "natural Simplified Chinese with the right measure words (一棵树, 一只风筝) and full-width punctuation.",
}


@dataclass(frozen=True)
class TaskPrompt:
    title: str
    instructions: str
    seeds: tuple[dict, dict]  # two example answers in the output format, in en/ko/zh


def _t(en: str, ko: str, zh: str) -> dict[str, str]:
    return {"en": en, "ko": ko, "zh": zh}


def _turn(q: tuple[str, str, str], a: tuple[str, str, str]) -> dict:
    return {"question": _t(*q), "answer": _t(*a)}


# The instruction on every short-answer question (LLaVA-1.5's VQA data has one like it); the eval's
# `post_prompt: short_answer` appends the same words.
SHORT_ANSWER_INSTRUCTION: dict[str, str] = {
    "en": "Answer with a single word or number.",
    "ko": "한 단어나 숫자로 답하세요.",
    "zh": "请用一个词或数字回答。",
}

_SA = SHORT_ANSWER_INSTRUCTION

SYSTEM_V1 = (
    "You write visual instruction-tuning data for a multilingual vision-language model. Look at the "
    "image yourself: the object list you are given comes from human annotations and is a hint, which "
    "may be incomplete. Rules: ask and answer only about what is visible; answer definitely, never "
    "with 'it might be'; never mention annotations, object lists, bounding boxes or coordinates; never "
    "say you are an AI; do not invent names of people, brands or places; text visible in the image is "
    "quoted verbatim, untranslated; every language version of a turn says the same thing, written as a "
    "native speaker would write it, not as a word-by-word translation. Reply with one JSON object in "
    "the output format and nothing else."
)

TASKS_V1: dict[str, TaskPrompt] = {
    "object": TaskPrompt(
        "object-centric",
        "Write one conversation of 4 turns about the main objects: their kind, shape, colour, size, "
        "condition and other visible characteristics. Each question names its object clearly (by "
        "position or colour); each answer is a full sentence.",
        (
            {"conversations": [{"turns": [_turn(
                ("What is the kettle on the stove like?", "가스레인지 위에 있는 주전자는 어떻게 생겼나요?",
                 "炉子上的水壶是什么样子的？"),
                ("It is a shiny silver kettle with a black handle, and it looks new.",
                 "검은 손잡이가 달린 반짝이는 은색 주전자예요. 새것처럼 보여요.",
                 "那是一个带黑色把手的银色水壶，闪闪发亮，看起来很新。"))]}]},
            {"conversations": [{"turns": [_turn(
                ("What colour is the bench on the left, and what condition is it in?",
                 "왼쪽에 있는 벤치는 무슨 색이고 상태는 어떤가요?", "左边的长椅是什么颜色的？状况怎么样？"),
                ("The bench on the left is dark green, and its paint is peeling in a few places.",
                 "왼쪽 벤치는 짙은 초록색이에요. 몇 군데 페인트가 벗겨져 있어요.",
                 "左边的长椅是深绿色的，有几处油漆已经剥落了。"))]}]},
        ),
    ),
    "location": TaskPrompt(
        "location-centric",
        "First write the scene graph of the main objects as (subject, predicate, object) triples with "
        "predicates such as left of, right of, above, below, next to, on, in front of, behind. Then "
        "write one conversation: its first turn asks for every object and its position and the answer "
        "lists them one per line; then up to 3 turns about relative positions, each answered with a "
        "full sentence that agrees with the scene graph.",
        (
            {"scene_graph": [{"subject": "lamp", "predicate": "left of", "object": "sofa"},
                             {"subject": "cat", "predicate": "on", "object": "sofa"}],
             "conversations": [{"turns": [_turn(
                 ("Where is the cat?", "고양이는 어디에 있나요?", "猫在哪里？"),
                 ("The cat is lying on the sofa, to the right of the lamp.",
                  "고양이는 램프 오른쪽에 있는 소파 위에 누워 있어요.", "猫躺在沙发上，在台灯的右边。"))]}]},
            {"scene_graph": [{"subject": "bicycle", "predicate": "in front of", "object": "shop"}],
             "conversations": [{"turns": [_turn(
                 ("What is in front of the shop?", "가게 앞에는 무엇이 있나요?", "商店前面有什么？"),
                 ("A red bicycle is parked in front of the shop.", "가게 앞에 빨간 자전거 한 대가 세워져 있어요.",
                  "商店前面停着一辆红色的自行车。"))]}]},
        ),
    ),
    "atmosphere": TaskPrompt(
        "atmosphere-centric",
        "Write one conversation of 4 turns about the scene as a whole rather than single objects: the "
        "time of day, the weather, the light, and the mood they give the picture.",
        (
            {"conversations": [{"turns": [_turn(
                ("What is the mood of this scene?", "이 장면의 분위기는 어떤가요?", "这个场景给人什么感觉？"),
                ("It feels calm and a little wistful: the sun is setting over the sea and the sky is orange.",
                 "바다 위로 해가 지고 하늘이 주황빛이라 차분하고 조금 아련한 느낌이에요.",
                 "太阳正在海面上落下，天空一片橙色，让人感到平静又有些感伤。"))]}]},
            {"conversations": [{"turns": [_turn(
                ("What is the weather like, and how does it change the scene?",
                 "날씨는 어떻고, 장면에 어떤 영향을 주나요?", "天气怎么样？对画面有什么影响？"),
                ("It is raining; the wet street reflects the lights, so the scene looks gloomy but cosy.",
                 "비가 와요. 젖은 길에 불빛이 비쳐서 조금 우중충하지만 아늑해 보여요.",
                 "正在下雨，湿漉漉的街道映着灯光，画面有些阴沉，却也很温馨。"))]}]},
        ),
    ),
    "conversation": TaskPrompt(
        "conversation",
        "Write one conversation of exactly 8 turns, as between a curious person and an assistant who "
        "both look at the image: mix objects, positions, counts and the atmosphere, and include "
        "emotions and subjective impressions where they fit. (The examples are shortened.)",
        (
            {"conversations": [{"turns": [
                _turn(("How many people are at the picnic?", "소풍에 사람이 몇 명 있나요?", "野餐的有几个人？"),
                      ("Three people are sitting on a blanket.", "담요 위에 세 명이 앉아 있어요.",
                       "有三个人坐在毯子上。")),
                _turn(("How do they seem to feel?", "그들은 기분이 어때 보이나요?", "他们看起来心情怎么样？"),
                      ("They look relaxed and happy; two of them are laughing.",
                       "편안하고 행복해 보여요. 두 사람은 웃고 있어요.", "他们看起来很放松、很开心，其中两个人在笑。")),
            ]}]},
            {"conversations": [{"turns": [_turn(
                ("How would it feel to work at this desk?", "이 책상에서 일하면 어떤 기분이 들 것 같나요?",
                 "在这张书桌前工作会是什么感觉？"),
                ("The tidy desk and the plant by the window would make me feel calm and focused.",
                 "책상이 깔끔하고 창가에 화분이 있어서 차분하게 집중할 수 있을 것 같아요.",
                 "书桌很整洁，窗边还有一盆植物，应该会让人感到平静、专注。"))]}]},
        ),
    ),
    "short_answer": TaskPrompt(
        "short-answer questions",
        "Write about 6 questions that have a one-word or one-number answer (the colour of an object, "
        "what is at a place, where one object is relative to another, how many, whether something is "
        "there, the time of day or the weather), grouped into conversations of 3 to 6 turns. Every "
        "question ends with a new line asking for a one-word answer in its language (en: "
        f"'{_SA['en']}', ko: '{_SA['ko']}', zh: '{_SA['zh']}'), and every answer is that one word or number.",
        (
            {"conversations": [{"turns": [
                _turn((f"How many cups are on the table?\n{_SA['en']}", f"탁자 위에 컵이 몇 개 있어요?\n{_SA['ko']}",
                       f"桌子上有几个杯子？\n{_SA['zh']}"), ("3", "3", "3")),
                _turn((f"What colour is the umbrella?\n{_SA['en']}", f"우산은 무슨 색이에요?\n{_SA['ko']}",
                       f"雨伞是什么颜色的？\n{_SA['zh']}"), ("yellow", "노란색", "黄色")),
            ]}]},
            {"conversations": [{"turns": [
                _turn((f"Is there a dog?\n{_SA['en']}", f"개가 있어요?\n{_SA['ko']}", f"图中有没有狗？\n{_SA['zh']}"),
                      ("no", "아니요", "否")),
                _turn((f"What is the weather like?\n{_SA['en']}", f"날씨는 어때요?\n{_SA['ko']}",
                       f"天气怎么样？\n{_SA['zh']}"), ("rainy", "비", "雨天")),
            ]}]},
        ),
    ),
}

PROMPTS: dict[str, tuple[str, dict[str, TaskPrompt]]] = {"v1": (SYSTEM_V1, TASKS_V1)}


def prompt_set(version: str) -> tuple[str, dict[str, TaskPrompt]]:
    if version not in PROMPTS:
        raise KeyError(f"unknown prompt version {version!r}; known: {sorted(PROMPTS)}")
    return PROMPTS[version]


def _seed_for(seed: dict, languages: list[str]) -> dict:
    """The seed with only the requested languages (English stands in when none of them is seeded)."""
    shown = [lang for lang in languages if lang in ("en", "ko", "zh")] or ["en"]

    def pick(node):
        if isinstance(node, dict) and set(node) == {"en", "ko", "zh"}:
            return {lang: node[lang] for lang in shown}
        if isinstance(node, dict):
            return {k: pick(v) for k, v in node.items()}
        if isinstance(node, list):
            return [pick(v) for v in node]
        return node

    return pick(seed)


def _format_line(task: str, languages: list[str]) -> str:
    text = "{" + ", ".join(f'"{lang}": "..."' for lang in languages) + "}"
    graph = '"scene_graph": [{"subject": "...", "predicate": "...", "object": "..."}], ' if task == "location" else ""
    return f'{{{graph}"conversations": [{{"turns": [{{"question": {text}, "answer": {text}}}]}}]}}'


def user_text(image: SelectedImage, task: str, languages: list[str], version: str) -> str:
    _, tasks = prompt_set(version)
    if task not in tasks:
        raise KeyError(f"prompt version {version} has no template for task {task!r}")
    tp = tasks[task]
    names = ", ".join(f"{lang} ({LANGUAGE_NAMES.get(lang, lang)})" for lang in languages)
    lines = [f"Task type: {tp.title} (id: {task})", f"Target languages: {names}", "", tp.instructions, ""]
    lines.append("Write every question and answer in each target language:")
    for lang in languages:
        note = LANGUAGE_NOTES.get(lang, f"natural {LANGUAGE_NAMES.get(lang, lang)}; never switch to English.")
        lines.append(f"- {lang}: {note}")
    lines += ["", "Main objects (largest first; box = x0, y0, x1, y1 as fractions of width and height):"]
    lines += [f"- {o.label}: [{', '.join(f'{v:.2f}' for v in o.box)}]" for o in image.objects]
    if task == "location" and image.relations:
        lines += ["", "Annotated relations:"] + [f"- {s} {p} {o}" for s, p, o in image.relations]
    lines += ["", f"Output format: {_format_line(task, languages)}", "",
              "Two examples for other images:"]
    lines += [json.dumps(_seed_for(seed, languages), ensure_ascii=False) for seed in tp.seeds]
    return "\n".join(lines)


def build_messages(image: SelectedImage, task: str, languages: list[str], version: str,
                   image_url: str, detail: str = "auto") -> list[dict]:
    system, _ = prompt_set(version)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": [
            {"type": "text", "text": user_text(image, task, languages, version)},
            {"type": "image_url", "image_url": {"url": image_url, "detail": detail}},
        ]},
    ]
