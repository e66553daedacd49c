"""Short-answer questions (the benchmark, and the VQA part of the stage-2 mix).

A `Question` is language-neutral: a category, a query (what is asked, as value ids) and an answer
value id. `render_question` writes it in one language with its one-word answer, so the same question
can be asked in en, ko and zh. `sample_balanced` draws questions so that, per category, every answer
value is equally frequent: a model cannot score by guessing the majority answer.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from xllava.world import phrases as P
from xllava.world.config import CATEGORIES
from xllava.world.korean import josa, nfc
from xllava.world.lexicon import COLOURS, KINDS, SHORT_ANSWER_INSTRUCTION, answer_word
from xllava.world.scene import Scene, direction

_CHOICES = 8  # candidates per draw when spreading questions over scenes


@dataclass(frozen=True)
class Question:
    scene_id: str
    category: str
    answer: str  # language-neutral value id: "red", "ball", "left", "2", "yes", "night"
    query: dict = field(default_factory=dict, hash=False, compare=False)
    variant: str = ""  # balancing sub-pool: exists "no" is split into hard/easy negatives


def candidates(scene: Scene) -> list[Question]:
    """Every well-posed short-answer question about the scene."""
    sid, out = scene.scene_id, []
    kinds_present = sorted({o.kind for o in scene.objects})
    for kind in kinds_present:
        obj = scene.unique_of_kind(kind)
        if obj:  # colour of a kind that appears exactly once, so "the ball" is unambiguous
            out.append(Question(sid, "colour", obj.colour, {"kind": kind}))
        out.append(Question(sid, "count", str(scene.count(kind)), {"kind": kind}))
    for obj in scene.objects:
        out.append(Question(sid, "kind_at", obj.kind, {"row": obj.row, "col": obj.col}))
    for a in scene.objects:
        for b in scene.objects:
            d = direction(a, b) if a is not b else None
            if d and scene.unique_of_kind(a.kind) and scene.unique_of_kind(b.kind):
                out.append(Question(sid, "relation", d, {"subject": a.kind, "reference": b.kind}))
    present = {(o.colour, o.kind) for o in scene.objects}
    for colour in COLOURS:
        for kind in KINDS:
            if (colour, kind) in present:
                out.append(Question(sid, "exists", "yes", {"colour": colour, "kind": kind}))
            else:  # a hard negative names a kind that is there, in a colour it does not have
                variant = "hard" if kind in kinds_present else "easy"
                out.append(Question(sid, "exists", "no", {"colour": colour, "kind": kind}, variant))
    out.append(Question(sid, "atmosphere", scene.atmosphere.time_of_day, {"aspect": "time"}))
    out.append(Question(sid, "atmosphere", scene.atmosphere.weather, {"aspect": "weather"}))
    return out


def kinds_involved(q: Question) -> frozenset[str]:
    """The object kinds a question names or has as its answer. Two turns of one conversation that
    share a kind can give each other away: "Where is the red ball relative to the cup?" answers a
    later "What colour is the ball?" without a look at the image."""
    k = q.query
    if q.category == "relation":
        return frozenset((k["subject"], k["reference"]))
    if q.category == "kind_at":
        return frozenset((q.answer,))
    return frozenset((k["kind"],)) if "kind" in k else frozenset()


def answer_of(q: Question, scene: Scene) -> str:
    """Recompute the answer value from the scene alone (used by tests and as a self-check)."""
    c, k = q.category, q.query
    if c == "colour":
        obj = scene.unique_of_kind(k["kind"])
        assert obj is not None
        return obj.colour
    if c == "count":
        return str(scene.count(k["kind"]))
    if c == "kind_at":
        obj = scene.at(k["row"], k["col"])
        assert obj is not None
        return obj.kind
    if c == "relation":
        a, b = scene.unique_of_kind(k["subject"]), scene.unique_of_kind(k["reference"])
        assert a is not None and b is not None
        return direction(a, b) or ""
    if c == "exists":
        hit = any(o.colour == k["colour"] and o.kind == k["kind"] for o in scene.objects)
        return "yes" if hit else "no"
    if c == "atmosphere":
        atm = scene.atmosphere
        return atm.time_of_day if k["aspect"] == "time" else atm.weather
    raise ValueError(f"unknown category {c!r}")


def _question_text(q: Question, scene: Scene, lang: str) -> str:
    c, k = q.category, q.query
    if c == "colour":
        kind = P.kind_word(k["kind"], lang)
        return {"en": f"What colour is the {kind}?", "ko": f"{josa(kind, '은')} 무슨 색이에요?",
                "zh": f"{kind}是什么颜色的？"}[lang]
    if c == "kind_at":
        pos = P.position(k["row"], k["col"], lang)
        return {"en": f"What is {pos}?", "ko": f"{pos}에 있는 것은 무엇이에요?", "zh": f"{pos}的物体是什么？"}[lang]
    if c == "relation":
        # kinds alone (each is unique in the scene): with colours the Korean subject became a token
        # of its own (" 공은" after an adjective, where the other questions start with "공은"), and
        # this question shared no word with the lookups the others train; 30% -> 60% in Korean
        sa, sb = P.kind_word(k["subject"], lang), P.kind_word(k["reference"], lang)
        if lang == "en":
            sa, sb = f"the {sa}", f"the {sb}"
        return {"en": f"Where is {sa} relative to {sb}?", "ko": f"{josa(sa, '은')} {sb}의 어느 쪽에 있어요?",
                "zh": f"{sa}在{sb}的哪一边？"}[lang]
    if c == "count":
        kind = KINDS[k["kind"]]
        return {"en": f"How many {kind.en_plural} are there?",
                "ko": f"{josa(kind.ko, '은')} 몇 {kind.ko_counter} 있어요?",
                "zh": f"图中有几{kind.zh_measure}{kind.zh}？"}[lang]
    if c == "exists":
        kind, colour = KINDS[k["kind"]], COLOURS[k["colour"]]
        return {"en": f"Is there {P.coloured(k['colour'], k['kind'], 'en', 'a')}?",
                "ko": f"{josa(P.coloured(k['colour'], k['kind'], 'ko'), '이')} 있어요?",
                "zh": f"图中有没有一{kind.zh_measure}{colour.zh}的{kind.zh}？"}[lang]
    if c == "atmosphere":
        if k["aspect"] == "time":
            return {"en": "What time of day is it?", "ko": "지금은 어느 때예요?", "zh": "现在是一天中的什么时候？"}[lang]
        return {"en": "What is the weather like?", "ko": "날씨는 어때요?", "zh": "天气怎么样？"}[lang]
    raise ValueError(f"unknown category {c!r}")


def render_question(q: Question, scene: Scene, lang: str, instruction: bool = True) -> tuple[str, str]:
    """(question text, one-word answer) in `lang`; the short-answer instruction on its own line."""
    text = _question_text(q, scene, lang)
    if instruction:
        text = f"{text}\n{SHORT_ANSWER_INSTRUCTION[lang]}"
    return nfc(text), nfc(answer_word(q.answer, lang))


def sample_balanced(scenes: list[Scene], per_category: int | dict[str, int], rng: random.Random,
                    categories: tuple[str, ...] = CATEGORIES, spread: bool = False) -> list[Question]:
    """`per_category` questions of each category (one count for all, or a count per category) with
    answers cycled uniformly over every value the scenes can supply (and, within an answer, over its
    variants). Questions are drawn without replacement while the pool lasts, then reused, so tiny
    worlds still work. `spread` evens out the number of questions per scene."""
    pools: dict[tuple[str, str, str], list[Question]] = {}
    for scene in scenes:
        for q in candidates(scene):
            pools.setdefault((q.category, q.answer, q.variant), []).append(q)
    spare = {key: list(pool) for key, pool in pools.items()}  # refills once a pool runs dry
    out: list[Question] = []
    asked: Counter[str] = Counter()
    for category in categories:
        answers = sorted({a for c, a, _ in pools if c == category})
        if not answers:
            continue
        variants = {a: sorted(v for c, aa, v in pools if c == category and aa == a) for a in answers}
        turn = dict.fromkeys(answers, 0)
        cycle: list[str] = []
        wanted = per_category if isinstance(per_category, int) else per_category.get(category, 0)
        for _ in range(wanted):
            if not cycle:
                cycle = list(answers)
                rng.shuffle(cycle)
            answer = cycle.pop()
            variant = variants[answer][turn[answer] % len(variants[answer])]
            turn[answer] += 1
            key = (category, answer, variant)
            pool = pools[key]
            if not pool:
                pool.extend(spare[key])
            if spread:
                # of a few random candidates, the one whose scene has been asked least: every scene then
                # gets about the same number of questions, its records the same length, and random
                # batches little padding (drawn uniformly, 10-turn records came out 1 to 10 turns long)
                picks = rng.sample(range(len(pool)), min(_CHOICES, len(pool)))
                i = min(picks, key=lambda j: asked[pool[j].scene_id])
            else:
                i = rng.randrange(len(pool))
            pool[i], pool[-1] = pool[-1], pool[i]  # O(1) removal
            out.append(pool.pop())
            asked[out[-1].scene_id] += 1
    return out
