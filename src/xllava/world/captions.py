"""One caption per scene and language that states everything a question can ask.

Each caption names the time of day and weather, then every object (size, colour, kind, grid
position) in reading order, so stage-1 alignment teaches the projector all the visual facts the
benchmark later asks about. Three template variants per language add a little surface variety.
"""

from __future__ import annotations

import random

from xllava.world import phrases as P
from xllava.world.korean import josa, nfc
from xllava.world.lexicon import CAPTION_PROMPTS, EN_NUMBERS, ZH_NUMBERS
from xllava.world.scene import Scene

N_VARIANTS = 3


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


def caption_record(scene: Scene, lang: str, rng: random.Random, image: str) -> dict:
    """A LLaVA stage-1 record: a varied short prompt, answered by the caption."""
    prompt = rng.choice(CAPTION_PROMPTS[lang])
    text = caption(scene, lang, rng.randrange(N_VARIANTS))
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
