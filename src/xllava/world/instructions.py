"""Stage-2 instruction records written straight from the scene graph (X-LLaVA's mvif task types).

Task types: `object` (shape/colour/size with full-sentence answers), `location` (a scene-graph
listing, then relative-position Q&A), `atmosphere` (time, weather, light, mood), `conversation`
(8 mixed turns) and `short_answer` (the benchmark's question generator on train scenes, several
turns packed per record). Content is chosen once per scene, language-neutrally, as a list of
`Turn`s (functions of the language), so the en, ko and zh records of a scene say the same thing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from xllava.world import phrases as P
from xllava.world.korean import josa, nfc
from xllava.world.lexicon import COLOURS, DIRECTIONS, KINDS, LIGHTS, POSITIONS, SIZES, TIMES, WEATHERS
from xllava.world.questions import Question, kinds_involved, render_question
from xllava.world.scene import Scene, SceneObject, direction

if TYPE_CHECKING:
    from xllava.config import WorldConfig

Turn = Callable[[str], tuple[str, str]]  # lang -> (human text, gpt text)

_EN_TIME = {"morning": "morning", "day": "daytime", "evening": "evening", "night": "night"}
_KO_WEATHER = {"sunny": "날씨가 맑아요.", "cloudy": "날씨가 흐려요.", "rainy": "비가 와요.", "snowy": "눈이 와요."}
_LIST_PROMPT = {
    "en": "List every object in the image with its position.",
    "ko": "이미지에 있는 물체와 위치를 모두 나열해 주세요.",
    "zh": "请列出图中的每个物体及其位置。",
}


# ---------------------------------------------------------------- object turns


def _what_is(o: SceneObject, lang: str) -> tuple[str, str]:
    pos, desc = P.position(o.row, o.col, lang), P.indefinite(o, lang)
    if lang == "en":
        return f"What is the object {pos}?", f"It is {desc}."
    if lang == "ko":
        return f"{pos}에 있는 물체는 무엇인가요?", f"{josa(desc, '이에요')}."
    return f"{pos}的物体是什么？", f"是{desc}。"


def _colour_of(o: SceneObject, lang: str) -> tuple[str, str]:
    pos, kind, colour = P.position(o.row, o.col, lang), P.kind_word(o.kind, lang), COLOURS[o.colour]
    if lang == "en":
        return f"What colour is the {kind} {pos}?", f"The {kind} {pos} is {colour.en}."
    if lang == "ko":
        return f"{pos}에 있는 {josa(kind, '은')} 무슨 색인가요?", f"{josa(colour.ko, '이에요')}."
    return f"{pos}的{kind}是什么颜色的？", f"它是{colour.zh}的。"


def _size_of(o: SceneObject, lang: str) -> tuple[str, str]:
    pos, kind, size = P.position(o.row, o.col, lang), P.kind_word(o.kind, lang), SIZES[o.size]
    if lang == "en":
        return f"Is the {kind} {pos} big or small?", f"It is {size.en}."
    if lang == "ko":
        return f"{pos}에 있는 {josa(kind, '은')} 큰가요, 작은가요?", f"{josa(kind, '은')} {size.ko_pred}."
    return f"{pos}的{kind}是大的还是小的？", f"它是{size.zh}的。"


def _object_turns(o: SceneObject) -> list[Turn]:
    return [partial(_what_is, o), partial(_colour_of, o), partial(_size_of, o)]


# ---------------------------------------------------------------- location turns


def _listing(scene: Scene, lang: str) -> str:
    sep = "：" if lang == "zh" else ": "
    rows = [f"- {P.definite(o, lang).removeprefix('the ')}{sep}{_pos_name(o, lang)}" for o in scene.reading_order()]
    return "\n".join(rows)


def _pos_name(o: SceneObject, lang: str) -> str:
    p = POSITIONS[o.row][o.col]
    return {"en": p.en, "ko": p.ko, "zh": p.zh}[lang]


def _relative(a: SceneObject, b: SceneObject, lang: str) -> tuple[str, str]:
    d = DIRECTIONS[direction(a, b) or ""]
    sa, sb = P.coloured(a.colour, a.kind, lang), P.coloured(b.colour, b.kind, lang)
    if lang == "en":
        return f"Where is {sa} relative to {sb}?", f"{P.capitalise(sa)} is {d.en_phrase} {sb}."
    if lang == "ko":
        return f"{josa(sa, '은')} {sb}의 어느 쪽에 있나요?", f"{josa(sa, '은')} {sb}의 {d.ko}에 있어요."
    return f"{sa}在{sb}的哪一边？", f"{sa}在{sb}的{d.zh}。"


def _where(o: SceneObject, lang: str) -> tuple[str, str]:
    name, pos = P.definite(o, lang), P.position(o.row, o.col, lang)
    if lang == "en":
        return f"Where is {name}?", f"It is {pos}."
    if lang == "ko":
        return f"{josa(name, '은')} 어디에 있나요?", f"{pos}에 있어요."
    return f"{name}在哪里？", f"在{pos}。"


def _next_to(o: SceneObject, scene: Scene, lang: str) -> tuple[str, str]:
    near = [scene.by_id(r.object) for r in scene.relations if r.subject == o.object_id and r.predicate == "next to"]
    name, items = P.definite(o, lang), [P.indefinite(n, lang) for n in near]
    if lang == "en":
        verb = "is" if len(items) == 1 else "are"
        answer = f"{P.capitalise(P.join_en(items))} {verb} next to it." if items else "Nothing is next to it."
        return f"What is next to {name}?", answer
    if lang == "ko":
        answer = f"{josa(', '.join(items), '이')} 있어요." if items else "옆에는 아무것도 없어요."
        return f"{name} 옆에는 무엇이 있나요?", answer
    answer = f"旁边有{'、'.join(items)}。" if items else "旁边什么也没有。"
    return f"{name}旁边有什么？", answer


def _location_turns(scene: Scene) -> list[Turn]:
    def unique(o: SceneObject) -> bool:  # nameable by colour + kind alone
        return sum(x.colour == o.colour and x.kind == o.kind for x in scene.objects) == 1

    def unique_full(o: SceneObject) -> bool:
        return sum((x.colour, x.kind, x.size) == (o.colour, o.kind, o.size) for x in scene.objects) == 1

    turns: list[Turn] = []
    for a in scene.objects:
        for b in scene.objects:
            if a is not b and direction(a, b) and unique(a) and unique(b):
                turns.append(partial(_relative, a, b))
    for o in scene.objects:
        if unique_full(o):
            turns.append(partial(_where, o))
            turns.append(partial(_next_to, o, scene))
    return turns


# ---------------------------------------------------------------- atmosphere turns


def _time(scene: Scene, lang: str) -> tuple[str, str]:
    t = TIMES[scene.atmosphere.time_of_day]
    if lang == "en":
        return "What time of day is it in this picture?", f"It is {_EN_TIME[t.en]}."
    if lang == "ko":
        return "이 그림은 하루 중 언제인가요?", f"{josa(t.ko, '이에요')}."
    return "这张图片是一天中的什么时候？", f"是{t.zh}。"


def _weather(scene: Scene, lang: str) -> tuple[str, str]:
    w = WEATHERS[scene.atmosphere.weather]
    if lang == "en":
        return "How is the weather?", f"It is {w.en}."
    if lang == "ko":
        return "날씨는 어떤가요?", _KO_WEATHER[w.en]
    return "天气怎么样？", f"是{w.zh}。"


def _light(scene: Scene, lang: str) -> tuple[str, str]:
    light = LIGHTS[scene.atmosphere.light]
    if lang == "en":
        return "Is the scene bright or dim?", f"The scene is {light.en}."
    if lang == "ko":
        return "장면은 밝은가요, 어두운가요?", f"장면이 {light.ko_pred}."
    return "画面是明亮的还是昏暗的？", f"画面比较{light.zh}。"


def mood_turn(scene: Scene, lang: str) -> tuple[str, str]:
    atm, w, light = scene.atmosphere, WEATHERS[scene.atmosphere.weather], LIGHTS[scene.atmosphere.light]
    if lang == "en":
        return ("Describe the mood of this picture.",
                f"It is {P.atmosphere(atm, 'en')}, so the scene feels {w.mood_en}. The light is {light.en}.")
    if lang == "ko":
        return ("이 그림의 분위기를 설명해 주세요.",
                f"{josa(P.atmosphere(atm, 'ko'), '이에요')}. {w.mood_ko} 분위기예요. 장면은 {light.ko_pred}.")
    return "请描述这张图片的氛围。", f"这是{P.atmosphere(atm, 'zh')}，气氛{w.mood_zh}，画面{light.zh}。"


def _atmosphere_turns(scene: Scene) -> list[Turn]:
    return [partial(f, scene) for f in (_time, _weather, _light, mood_turn)]


def _count(scene: Scene, kind: str, lang: str) -> tuple[str, str]:
    k, n = KINDS[kind], scene.count(kind)
    phrase = P.count_phrase(kind, n, lang)
    if lang == "en":
        return f"How many {k.en_plural} are there?", f"There {'is' if n == 1 else 'are'} {phrase}."
    if lang == "ko":
        return f"{josa(k.ko, '은')} 몇 {k.ko_counter} 있나요?", f"{phrase} 있어요."
    return f"图中有几{k.zh_measure}{k.zh}？", f"图中有{phrase}。"


# ---------------------------------------------------------------- records


def _record(scene: Scene, image: str, task: str, lang: str, turns: list[tuple[str, str]], tag: str = "",
            image_first: bool = True) -> dict:
    conversations = []
    for i, (human, gpt) in enumerate(turns):
        if i == 0:
            human = f"<image>\n{human}" if image_first else f"{human}\n<image>"
        conversations.append({"from": "human", "value": nfc(human)})
        conversations.append({"from": "gpt", "value": nfc(gpt)})
    return {
        "id": f"{scene.scene_id}-{task}{tag}-{lang}",
        "image": image,
        "conversations": conversations,
        "lang": lang,
        "task": task,
        "source": "world",
    }


def mvif_records(scene: Scene, task: str, image: str, languages: list[str], rng: random.Random) -> list[dict]:
    """One record per language of an mvif task type; the content is drawn once for all languages."""
    prefix: Callable[[str], tuple[str, str]] | None = None
    if task == "object":
        objs = rng.sample(scene.objects, min(2, len(scene.objects)))
        turns = [t for o in objs for t in rng.sample(_object_turns(o), 2)]
    elif task == "location":
        pool = _location_turns(scene)
        turns = rng.sample(pool, min(3, len(pool)))
        prefix = partial(lambda s, lang: (_LIST_PROMPT[lang], _listing(s, lang)), scene)
    elif task == "atmosphere":
        turns = _atmosphere_turns(scene)
        rng.shuffle(turns)
    elif task == "conversation":
        pool = [t for o in scene.objects for t in _object_turns(o)] + _location_turns(scene)
        pool += _atmosphere_turns(scene) + [partial(_count, scene, k) for k in sorted({o.kind for o in scene.objects})]
        turns = rng.sample(pool, min(8, len(pool)))
    else:
        raise ValueError(f"unknown mvif task {task!r}")
    if prefix is not None:
        turns = [prefix, *turns]
    return [_record(scene, image, task, lang, [t(lang) for t in turns]) for lang in languages]


def _sized_chunks(questions: list[Question], turns: tuple[int, int], rng: random.Random) -> list[list[Question]]:
    min_turns, max_turns = turns
    chunks: list[list[Question]] = []
    while questions:
        size = rng.randint(min_turns, max_turns)
        if len(questions) - size < min_turns:  # never leave a tail shorter than min_turns behind
            size = len(questions) if len(questions) <= max_turns else len(questions) - min_turns
        chunks.append(questions[:size])
        questions = questions[size:]
    return chunks


def _independent_chunks(questions: list[Question], max_turns: int) -> list[list[Question]]:
    """First fit: each question joins the first record with room and none of its kinds."""
    chunks: list[tuple[list[Question], set[str]]] = []
    for q in questions:
        kinds = kinds_involved(q)
        chunk = next((c for c in chunks if len(c[0]) < max_turns and not kinds & c[1]), None)
        if chunk is None:
            chunk = ([], set())
            chunks.append(chunk)
        chunk[0].append(q)
        chunk[1].update(kinds)
    return [turns for turns, _ in chunks]


def short_answer_packing(cfg: WorldConfig) -> dict[str, Any]:
    """The world config's packing options as keyword arguments of `short_answer_records`."""
    return {"turns": cfg.short_answer_turns, "instruction": cfg.short_answer_instruction,
            "independent_turns": cfg.short_answer_independent_turns, "image_first": cfg.short_answer_image_first}


def short_answer_records(scene: Scene, questions: list[Question], image: str, languages: list[str],
                         rng: random.Random, turns: tuple[int, int] = (3, 6),
                         instruction: Literal["every_turn", "first_turn"] = "every_turn",
                         independent_turns: bool = False, image_first: bool = True) -> list[dict]:
    """Pack the scene's short-answer questions into multi-turn records of turns[0]..turns[1] turns;
    the one-word instruction goes on every question or (instruction="first_turn") on the first.

    independent_turns: no two turns of a record involve the same object kind, so no answer can be
    read off the conversation before it (records then hold up to turns[1] turns, as many as the
    scene's kinds allow). Packed freely, a model learned to copy "red" from "Is there a red ball?"
    into "What colour is the ball?", and never to look: held-out colour stayed at chance.

    image_first=False puts the image after the first question ("question\n<image>"): the image
    tokens then see what is asked, so each can mark itself as the object in question, and the
    answer only has to read the marked token instead of searching the image by content."""
    questions = list(questions)
    rng.shuffle(questions)
    chunks = _independent_chunks(questions, turns[1]) if independent_turns else _sized_chunks(questions, turns, rng)

    def rendered(chunk: list[Question], lang: str) -> list[tuple[str, str]]:
        return [render_question(q, scene, lang, instruction=instruction == "every_turn" or j == 0)
                for j, q in enumerate(chunk)]

    return [
        _record(scene, image, "short_answer", lang, rendered(chunk, lang), tag=str(i), image_first=image_first)
        for i, chunk in enumerate(chunks)
        for lang in languages
    ]
