"""One caption per scene and language that states everything a question can ask.

Each caption names the time of day and weather, then every object (size, colour, kind, grid
position), so stage-1 alignment teaches the projector all the visual facts the benchmark later asks
about. Two styles:

- `listing` walks the grid in reading order ("a big red ball at the top left, ..."), in three
  template variants per language. The next word always depends on a *place*: it teaches reading a
  cell, not finding an object.
- `object_first` names each kind first, in random order, then its size, colour and place, and ends
  with a few relations between objects, each stated only after both objects are named ("Seen from
  the box, the ball is to the left." / "공은 상자의 왼쪽에 있어요."). Every attribute word then has to be
  looked up by the object's *kind*, the way the colour, existence and relation questions ask.
"""

from __future__ import annotations

import random

from xllava.world import phrases as P
from xllava.world.korean import josa, nfc
from xllava.world.lexicon import (
    CAPTION_PROMPTS,
    COLOURS,
    DIRECTIONS,
    EN_NUMBERS,
    KINDS,
    KO_NATIVE_NUMBERS,
    SIZES,
    ZH_NUMBERS,
)
from xllava.world.scene import Scene, SceneObject, direction

N_VARIANTS = 3
CAPTION_STYLES = ("listing", "object_first")
_MAX_RELATIONS = 3  # relation sentences per object-first caption
_EN_TOWARDS = {"left": "to the left", "right": "to the right", "above": "above", "below": "below"}


def _en(scene: Scene, variant: int) -> str:
    objs = scene.reading_order()
    atm = P.atmosphere(scene.atmosphere, "en")
    if variant == 0:
        items = [f"{P.indefinite(o, 'en')} is {P.position(o.row, o.col, 'en')}" for o in objs]
        return f"{P.capitalise(atm)}. {P.capitalise(P.join_en(items))}."
    items = [f"{P.indefinite(o, 'en')} {P.position(o.row, o.col, 'en')}" for o in objs]
    if variant == 1:
        return f"This picture shows {atm}. There is {P.join_en(items)}."
    n = len(objs)
    noun = "object" if n == 1 else "objects"
    return f"{P.capitalise(atm)} scene with {EN_NUMBERS[n]} {noun}: {P.join_en(items)}."


def _ko(scene: Scene, variant: int) -> str:
    objs = scene.reading_order()
    atm = P.atmosphere(scene.atmosphere, "ko")
    located = [(f"{P.position(o.row, o.col, 'ko')}에", P.indefinite(o, "ko")) for o in objs]
    if variant == 2:
        # 왼쪽 위에 큰 빨간 공, 가운데에 작은 파란 상자가 있어요.
        listed = [f"{where} {what}" for where, what in located[:-1]]
        where, what = located[-1]
        listed.append(f"{where} {josa(what, '이')}")
        body = ", ".join(listed) + " 있어요."
        return nfc(f"{atm} 풍경이에요. 물체가 {len(objs)}개 있어요. {body}")
    # 왼쪽 위에 큰 빨간 공이 있고, 가운데에 작은 파란 상자가 있어요.
    clauses = [f"{where} {josa(what, '이')} 있고" for where, what in located[:-1]]
    where, what = located[-1]
    clauses.append(f"{where} {josa(what, '이')} 있어요.")
    body = ", ".join(clauses)
    if variant == 0:
        return nfc(f"{josa(atm, '이에요')}. {body}")
    return nfc(f"이 그림은 {atm}의 모습이에요. 그림을 보면 {body}")


def _zh(scene: Scene, variant: int) -> str:
    objs = scene.reading_order()
    items = [f"{P.position(o.row, o.col, 'zh')}有{P.indefinite(o, 'zh')}" for o in objs]
    if variant == 0:
        return f"{P.atmosphere(scene.atmosphere, 'zh')}。{'，'.join(items)}。"
    if variant == 1:
        return f"这是{P.atmosphere(scene.atmosphere, 'zh')}。图中{'，'.join(items)}。"
    listed = [f"{P.position(o.row, o.col, 'zh')}是{P.indefinite(o, 'zh')}" for o in objs]
    atm = P.atmosphere(scene.atmosphere, "zh", article=False)
    return f"{atm}，图中有{ZH_NUMBERS[len(objs)]}个物体：{'，'.join(listed)}。"


_WRITERS = {"en": _en, "ko": _ko, "zh": _zh}


def caption(scene: Scene, lang: str, variant: int = 0) -> str:
    return _WRITERS[lang](scene, variant % N_VARIANTS)


def _one_of_kind(o: SceneObject, lang: str) -> str:
    """The ball is big and red, at the top left. / 공은 왼쪽 위에 있는 큰 빨간 공이에요. / 球是红色的大球，在左上角。"""
    if lang == "en":
        return f"The {KINDS[o.kind].en} is {SIZES[o.size].en} and {COLOURS[o.colour].en}, {P.position(o.row, o.col, 'en')}."
    if lang == "ko":
        what = f"{P.position(o.row, o.col, 'ko')}에 있는 {P.indefinite(o, 'ko')}"
        return f"{josa(KINDS[o.kind].ko, '은')} {josa(what, '이에요')}."
    return f"{KINDS[o.kind].zh}是{P.definite(o, 'zh')}，在{P.position(o.row, o.col, 'zh')}。"


def _several_of_kind(same: list[SceneObject], lang: str) -> str:
    """There are two balls: a small red one at the top left and a big blue one in the middle."""
    kind, n = KINDS[same[0].kind], len(same)
    if lang == "en":
        ones = [f"a {SIZES[o.size].en} {COLOURS[o.colour].en} one {P.position(o.row, o.col, 'en')}" for o in same]
        return f"There are {EN_NUMBERS[n]} {kind.en_plural}: {P.join_en(ones)}."
    if lang == "ko":
        ones = [f"{P.position(o.row, o.col, 'ko')}에 {P.indefinite(o, 'ko')}" for o in same]
        ones[-1] = josa(ones[-1], "이")
        return f"{josa(kind.ko, '은')} {KO_NATIVE_NUMBERS[n]} {kind.ko_counter} 있어요. {', '.join(ones)} 있어요."
    ones = [f"{P.position(o.row, o.col, 'zh')}有{P.indefinite(o, 'zh')}" for o in same]
    return f"图中有{ZH_NUMBERS[n]}{kind.zh_measure}{kind.zh}：{'，'.join(ones)}。"


def _relation(a: SceneObject, b: SceneObject, d: str, lang: str) -> str:
    """Where a is relative to b, the direction word last: both objects are named before it."""
    if lang == "en":
        return f"Seen from the {KINDS[b.kind].en}, the {KINDS[a.kind].en} is {_EN_TOWARDS[d]}."
    if lang == "ko":
        return f"{josa(KINDS[a.kind].ko, '은')} {KINDS[b.kind].ko}의 {DIRECTIONS[d].ko}에 있어요."
    return f"{KINDS[a.kind].zh}在{KINDS[b.kind].zh}的{DIRECTIONS[d].zh}。"


def object_first_caption(scene: Scene, lang: str, rng: random.Random) -> str:
    """The atmosphere, then each kind (in random order) with its attributes, then a few relations
    between objects that are the only one of their kind (so "the ball" is unambiguous)."""
    by_kind: dict[str, list[SceneObject]] = {}
    for o in scene.reading_order():
        by_kind.setdefault(o.kind, []).append(o)
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    sentences = [_one_of_kind(by_kind[k][0], lang) if len(by_kind[k]) == 1 else _several_of_kind(by_kind[k], lang)
                 for k in kinds]
    unique = [by_kind[k][0] for k in kinds if len(by_kind[k]) == 1]
    pairs = [(a, b, d) for a in unique for b in unique if a is not b and (d := direction(a, b))]
    for a, b, d in rng.sample(pairs, min(_MAX_RELATIONS, len(pairs))):
        sentences.append(_relation(a, b, d, lang))
    atm = P.atmosphere(scene.atmosphere, lang)
    opening = {"en": f"{P.capitalise(atm)}.", "ko": f"{josa(atm, '이에요')}.", "zh": f"{atm}。"}[lang]
    return nfc((" " if lang != "zh" else "").join([opening, *sentences]))


def caption_record(scene: Scene, lang: str, rng: random.Random, image: str, style: str = "listing") -> dict:
    """A LLaVA stage-1 record: a varied short prompt, answered by the caption."""
    prompt = rng.choice(CAPTION_PROMPTS[lang])
    if style == "object_first":
        text = object_first_caption(scene, lang, rng)
    elif style == "listing":
        text = caption(scene, lang, rng.randrange(N_VARIANTS))
    else:
        raise ValueError(f"unknown caption style {style!r}; known: {list(CAPTION_STYLES)}")
    return {
        "id": f"{scene.scene_id}-caption-{lang}",
        "image": image,
        "conversations": [
            {"from": "human", "value": f"<image>\n{prompt}"},
            {"from": "gpt", "value": text},
        ],
        "lang": lang,
        "task": "caption",
        "source": "world",
    }
