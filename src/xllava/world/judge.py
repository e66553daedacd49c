"""The world judge: an offline stand-in for GPT-4 that judges answers by the scene graph's facts.

No judge model is reachable offline, but the embedded world knows the ground truth of every image.
This responder plugs into the fault-injecting OpenAI-compatible server of
xllava.datagen.openai_server; it reads the request (as judge_prompts.py builds it) and replies the
way a judge would:
- LLaVA-Bench review: the facts are the world words (kinds, colours, sizes, time of day, weather) in the
  [Context]; the facts that matter are those the reference (Assistant 1) states. Each assistant
  scores 1 + 9 x (share of the reference's facts it states) - 3 per fact it gets wrong, clamped
  to 1..10; the first line is "score1 score2", as the protocol asks.
- Pairwise: the image (sent as a data URL) is looked up by its bytes' hash among the world's images;
  each answer gets (correct facts - 2 x wrong facts) about that scene; a difference of at least one
  decides, otherwise "Both answers are similar". An image it does not know gets a reply with no
  verdict, which the client counts as a failed judgement.
Words are matched in the question's language only, so an answer in the wrong language states no
facts. It is a crude judge, and the report says so; it is named `xllava-world-judge` in every score.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from xllava.datagen.openai_server import ChatRequest
from xllava.eval.judge_prompts import VERDICTS
from xllava.eval.language import NEUTRAL, detect_language
from xllava.world.lexicon import COLOURS, KINDS, SIZES, TIMES, WEATHERS
from xllava.world.scene import Scene

MODEL_NAME = "xllava-world-judge"
Fact = tuple[str, str]  # (table, value id): ("colour", "red")


def _surface_forms() -> dict[str, dict[str, Fact]]:
    forms: dict[str, dict[str, Fact]] = {"en": {}, "ko": {}, "zh": {}}
    for value, k in KINDS.items():
        for lang, words in (("en", (k.en, k.en_plural)), ("ko", (k.ko,)), ("zh", (k.zh,))):
            forms[lang].update({w: ("kind", value) for w in words})
    for value, c in COLOURS.items():
        for lang, words in (("en", (c.en,)), ("ko", (c.ko, c.ko_adj)), ("zh", (c.zh,))):
            forms[lang].update({w: ("colour", value) for w in words})
    for value, z in SIZES.items():
        for lang, words in (("en", (z.en,)), ("ko", (z.ko, z.ko_pred)), ("zh", (z.zh,))):
            forms[lang].update({w: ("size", value) for w in words})
    for value, t in TIMES.items():
        extra = ("daytime",) if value == "day" else ()
        for lang, words in (("en", (t.en, *extra)), ("ko", (t.ko,)), ("zh", (t.zh, t.zh_noun))):
            forms[lang].update({w: ("time", value) for w in words})
    for value, w in WEATHERS.items():
        for lang, words in (("en", (w.en,)), ("ko", (w.ko, w.ko_adj.split()[0])), ("zh", (w.zh, w.zh_adj))):
            forms[lang].update({word: ("weather", value) for word in words})
    return forms


FORMS = _surface_forms()


def facts_in(text: str, lang: str) -> set[Fact]:
    """World facts a text states: English by whole words, Korean by word starts (particles follow
    the noun: 공이, 빨간색이에요), Chinese by substring."""
    forms = FORMS.get(lang, FORMS["en"])
    if lang == "en":
        words = set(re.findall(r"[a-z]+", text.lower()))
        return {fact for w, fact in forms.items() if w in words}
    if lang == "ko":
        tokens = [t.strip(".,!?()[]\"'") for t in text.split()]
        return {fact for w, fact in forms.items() if any(t.startswith(w) for t in tokens)}
    return {fact for w, fact in forms.items() if w in text}


def scene_facts(scene: Scene) -> set[Fact]:
    facts = {(table, getattr(o, table)) for o in scene.objects for table in ("kind", "colour", "size")}
    return facts | {("time", scene.atmosphere.time_of_day), ("weather", scene.atmosphere.weather)}


def _section(text: str, label: str, end: str) -> str | None:
    match = re.search(re.escape(f"[{label}]") + r"\n(.*?)\n\s*" + re.escape(f"[{end}"), text, re.DOTALL)
    return match.group(1).strip() if match else None


class WorldJudge:
    """A responder for xllava.datagen.openai_server (ChatRequest -> reply text); `respond(body)`
    takes a bare request body."""

    name = MODEL_NAME

    def __init__(self, world_dir: Path):
        graphs = json.loads((Path(world_dir) / "scene_graphs.json").read_text(encoding="utf-8"))
        self.by_image: dict[str, Scene] = {}
        for graph in graphs:
            path = Path(world_dir) / graph["image"]
            if path.is_file():
                self.by_image[hashlib.sha256(path.read_bytes()).hexdigest()] = Scene.from_dict(graph)

    def __call__(self, request: ChatRequest) -> str:
        return self.respond(request.body)

    def respond(self, body: dict) -> str:
        texts, images = [], []
        for message in body.get("messages", []):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            for part in parts:
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "image_url":
                    images.append(part.get("image_url", {}).get("url", ""))
        text = "\n".join(texts)
        if "[Answer A]" in text:
            return self.pairwise(text, images)
        return self.review(text)

    # ------------------------------------------------------------ LLaVA-Bench review

    def review(self, text: str) -> str:
        ko = "[어시스턴트 1]" in text
        labels = ("설명", "질문", "어시스턴트 1", "어시스턴트 2", "어시스턴트") if ko else (
            "Context", "Question", "Assistant 1", "Assistant 2", "End of Assistant")
        context = _section(text, labels[0], labels[1])
        question = _section(text, labels[1], labels[2])
        first = _section(text, labels[2], labels[4])
        second = _section(text, labels[3], labels[4])
        if None in (context, question, first, second):
            return "The request does not follow the review layout; no scores."
        lang = detect_language(question or "")
        lang = "en" if lang == NEUTRAL else lang
        truth = facts_in(context or "", lang)
        wanted = facts_in(first or "", lang) & truth or truth

        def score(answer: str) -> int:
            said = facts_in(answer, lang)
            recall = len(said & wanted) / len(wanted) if wanted else 0.0
            return max(1, min(10, round(1 + 9 * recall - 3 * len(said - truth))))

        s1, s2 = score(first or ""), score(second or "")
        return f"{s1} {s2}\nScored by the facts of the scene description each answer states correctly or wrongly."

    # ------------------------------------------------------------ pairwise preference

    def pairwise(self, text: str, images: list[str]) -> str:
        scene = None
        for url in images:
            if url.startswith("data:") and "," in url:
                digest = hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()
                scene = self.by_image.get(digest, scene)
        if scene is None:
            return "I do not know this image, so I cannot compare the answers."
        question = _section(text, "Question", "Answer A") or ""
        answer_a = _section(text, "Answer A", "End of Answer A") or ""
        answer_b = _section(text, "Answer B", "End of Answer B") or ""
        lang = detect_language(question)
        lang = "en" if lang == NEUTRAL else lang
        truth = scene_facts(scene)

        def score(answer: str) -> int:
            said = facts_in(answer, lang)
            return len(said & truth) - 2 * len(said - truth)

        diff = score(answer_a) - score(answer_b)
        verdicts = list(VERDICTS)
        verdict = verdicts[0] if diff >= 1 else verdicts[1] if diff <= -1 else verdicts[2]
        return f"{verdict}\nCompared by the scene facts each answer states correctly or wrongly."
