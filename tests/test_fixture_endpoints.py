"""The fixture teacher and judge (tests/fixture_endpoints.py) drive the generator and the judges over
real HTTP, on images and Visual Genome annotations that are not the embedded world's."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import openai
import pytest
from PIL import Image, ImageDraw

from tests.fixture_endpoints import (
    JUDGE_MODEL,
    TEACHER_MODEL,
    FixtureJudge,
    FixtureTeacher,
    fixture_endpoints,
)
from xllava.datagen.config import TASKS, DatagenConfig, QualityConfig
from xllava.datagen.derive import derive_training_set
from xllava.datagen.generate import generate
from xllava.datagen.openai_server import ChatRequest
from xllava.datagen.prompts import build_messages
from xllava.datagen.quality import gate_items, script_ratio
from xllava.datagen.schema import parse_answer
from xllava.datagen.selection import MainObject, SelectedImage
from xllava.eval import judge as J
from xllava.eval.items import EvalItem
from xllava.eval.judge_prompts import pairwise_messages, parse_pairwise, parse_review, review_messages

SIZE = 64
COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 170, 60), "yellow": (230, 210, 40)}
# per image: (name, attributes, shape, colour, box in pixels x, y, w, h)
SCENES = [
    [("red ball", ["round"], "ellipse", "red", (4, 4, 24, 24)), ("tree", [], "rect", "green", (36, 8, 20, 50)),
     ("house", ["small"], "rect", "yellow", (8, 40, 20, 18))],
    [("blue car", [], "rect", "blue", (2, 30, 40, 20)), ("sun", ["bright"], "ellipse", "yellow", (44, 2, 16, 16))],
    [("cat", [], "ellipse", "yellow", (10, 10, 30, 30)), ("dog", [], "ellipse", "red", (42, 36, 18, 18)),
     ("box", [], "rect", "blue", (4, 46, 14, 14)), ("flower", ["pink"], "ellipse", "green", (46, 4, 12, 12))],
    [("tree", [], "rect", "green", (4, 8, 14, 50)), ("tree", [], "rect", "green", (46, 8, 14, 50)),
     ("bench", [], "rect", "red", (20, 40, 24, 10))],
    [("green kite", [], "ellipse", "green", (20, 4, 24, 20))],  # one object
    [("gizmo", ["shiny"], "rect", "blue", (6, 6, 28, 28)), ("widget", [], "ellipse", "red", (34, 34, 26, 26)),
     ("yellow umbrella", [], "ellipse", "yellow", (36, 4, 20, 16))],  # names the fixture has no words for
]


def _draw_images(root: Path) -> list[int]:
    """One PNG per scene in root/images, and a Visual Genome objects.json naming its objects."""
    (root / "images").mkdir(parents=True)
    entries, ids = [], []
    for i, scene in enumerate(SCENES):
        image_id = 1000 + i
        im = Image.new("RGB", (SIZE, SIZE), (235, 235, 240 - 10 * i))
        draw = ImageDraw.Draw(im)
        objects = []
        for j, (name, attributes, shape, colour, (x, y, w, h)) in enumerate(scene):
            box = (x, y, x + w - 1, y + h - 1)
            (draw.ellipse if shape == "ellipse" else draw.rectangle)(box, fill=COLOURS[colour])
            objects.append({"object_id": image_id * 10 + j, "x": x, "y": y, "w": w, "h": h,
                            "names": [name], "attributes": attributes, "synsets": []})
        im.save(root / "images" / f"{image_id}.png")
        entries.append({"image_id": image_id, "image_url": f"https://example.org/vg/{image_id}.png",
                        "objects": objects})
        ids.append(image_id)
    (root / "objects.json").write_text(json.dumps(entries), encoding="utf-8")
    return ids


def _config(teacher_url: str) -> DatagenConfig:
    return DatagenConfig.model_validate({
        "tasks": ["object", "location", "atmosphere", "conversation"],
        "languages": ["en", "ko"],
        "selection": {"image_dir": "images", "min_main_objects": 1},
        "teacher": {"base_url": teacher_url, "model": TEACHER_MODEL, "structured_output": "json_schema",
                    "concurrency": 2, "timeout_s": 10.0, "backoff_base_s": 0.02, "backoff_max_s": 0.2},
        "prices": {TEACHER_MODEL: {"input_per_mtok": 0.0, "output_per_mtok": 0.0}},
    })


def _texts(record: dict) -> list[str]:
    return [m["value"].replace("<image>", "") for m in record["conversations"]]


def test_generate_and_derive_against_the_fixture_teacher(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "fixture-key")
    root, out = tmp_path / "vg", tmp_path / "out"
    ids = _draw_images(root)
    with fixture_endpoints() as (teacher_url, judge_url):
        assert teacher_url != judge_url
        models = openai.OpenAI(base_url=teacher_url, api_key="unused").models.list()
        assert [m.id for m in models] == [TEACHER_MODEL]
        cfg = _config(teacher_url)
        summary = generate(cfg, root, out, teacher_url, progress=False)
    pairs = len(ids) * len(cfg.tasks)
    assert summary["images"]["selected"] == len(ids)
    assert summary["ok"] == summary["requested"] == summary["pairs"] == pairs, summary
    assert summary["failed"] == summary["rejected"] == 0 and summary["rejected_items_by_reason"] == {}
    assert summary["structured_output"] == "json_schema"
    assert summary["usage"]["prompt_tokens"] > 0 and summary["usage"]["completion_tokens"] > 0

    derived = derive_training_set(out / "store.jsonl", out / "instruct.jsonl", root, cfg.quality)
    assert derived["dropped_cross_record"] == {}
    records = [json.loads(line) for line in (out / "instruct.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == derived["records"] == pairs * 2  # one item per answer, one record per language
    assert set(derived["by_task_lang"]) == {f"{t}/{lang}" for t in cfg.tasks for lang in ("en", "ko")}
    assert {r["image"] for r in records} == {f"../vg/images/{i}.png" for i in ids}
    for r in records:
        assert (out / r["image"]).is_file()
        assert r["teacher"] == TEACHER_MODEL and r["source"] == "datagen"
        first = r["conversations"][0]
        assert first["from"] == "human" and first["value"].startswith("<image>\n")
        assert sum("<image>" in m["value"] for m in r["conversations"]) == 1
        if r["task"] == "conversation":
            assert len(r["conversations"]) == 2 * cfg.quality.conversation_turns
        for text in _texts(r):
            ratio = script_ratio(text, r["lang"])
            assert ratio is None or ratio >= 0.9, (r["id"], text)
    # the content follows the annotations: each image's English records name its objects
    for i, scene in zip(ids, SCENES, strict=True):
        english = " ".join(t for r in records if r["lang"] == "en" and f"/{i}.png" in r["image"] for t in _texts(r))
        assert all(name in english for name, *_ in scene)
    korean = " ".join(t for r in records if r["lang"] == "ko" for t in _texts(r))
    assert "공" in korean and "고양이" in korean and "물건" in korean  # translated, or "the thing at ..."


def _selected(objects: list[tuple[str, tuple[str, ...], tuple[float, float, float, float]]]) -> SelectedImage:
    return SelectedImage("x", Path("x.png"), "x.png", "0" * 64,
                         [MainObject(i, name, attrs, box) for i, (name, attrs, box) in enumerate(objects)])


@pytest.mark.parametrize("objects", [
    [("red ball", ("round",), (0.1, 0.1, 0.4, 0.4)), ("tree", (), (0.6, 0.1, 0.9, 0.9)),
     ("yellow house", (), (0.1, 0.6, 0.4, 0.9))],
    [("kite", (), (0.3, 0.0, 0.7, 0.3))],
    [("tree", (), (0.0, 0.1, 0.2, 0.9)), ("tree", (), (0.8, 0.1, 1.0, 0.9)), ("gadget", ("odd",), (0.4, 0.4, 0.6, 0.6))],
], ids=["three", "one", "repeated-and-unknown"])
def test_teacher_answers_every_task_in_en_ko_zh_and_passes_the_gates(objects) -> None:
    teacher, languages = FixtureTeacher(), ["en", "ko", "zh"]
    image = _selected(objects)
    url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    for task in TASKS:
        for langs in (languages, ["ko"], ["zh", "en"]):
            body = {"model": TEACHER_MODEL, "messages": build_messages(image, task, langs, "v1", url)}
            reply = teacher(ChatRequest(body, {}))
            assert reply.prompt_tokens and reply.completion_tokens
            answer = parse_answer(reply.content, task, langs)
            assert list(answer["conversations"][0]["turns"][0]["question"]) == langs
            items = gate_items(answer, task, QualityConfig())
            assert items and all(item["rejected"] is None for item in items), (task, langs, items)
            if task == "location":
                assert len(answer["scene_graph"]) == len(objects) - 1
            if task == "short_answer":
                for item in items:
                    assert 3 <= len(item["turns"]) <= 6
                    assert all(t["question"]["en"].endswith("Answer with a single word or number.")
                               for t in item["turns"] if "en" in t["question"])
            assert teacher(ChatRequest(body, {})).content == reply.content  # deterministic


def _png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def _eval_items(tmp_path: Path, lang: str) -> list[EvalItem]:
    image = tmp_path / f"judge-{lang}.png"
    image.write_bytes(_png())
    if lang == "en":
        rows = [("Where is the cat?", "A cat sits on a red sofa next to a lamp.",
                 "The cat is sitting on the red sofa, to the right of the lamp.", "conv"),
                ("Describe the picture in detail.", "A red sofa with a cat; a lamp on the left.",
                 "A cat is lying on a red sofa, and a tall lamp stands on the left.", "detail")]
    else:
        rows = [("고양이는 어디에 있나요?", "빨간 소파 위에 고양이가 있고 옆에 램프가 있어요.",
                 "고양이는 램프 오른쪽에 있는 빨간 소파 위에 앉아 있어요.", "conv"),
                ("사진을 자세히 설명해 주세요.", "빨간 소파와 고양이, 왼쪽의 램프.",
                 "빨간 소파 위에 고양이가 누워 있고 왼쪽에 키 큰 램프가 서 있어요.", "detail")]
    return [EvalItem(f"{lang}-{i}", image, q, q, lang, category=cat, extra={"context": ctx, "reference": ref})
            for i, (q, ctx, ref, cat) in enumerate(rows)]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_review_and_pairwise_against_the_fixture_judge(tmp_path: Path, lang: str) -> None:
    items = _eval_items(tmp_path, lang)
    reference = {it.question_id: it.extra["reference"] for it in items}
    unrelated = "A snowy night with a purple kite." if lang == "en" else "눈 오는 밤이에요. 보라색 연이 있어요."
    answers = {items[0].question_id: reference[items[0].question_id], items[1].question_id: unrelated}
    cfg = J.JudgeConfig(model=JUDGE_MODEL, max_retries=0, timeout_s=10, concurrency=2)
    with fixture_endpoints() as (_, judge_url):
        client = J.make_client(cfg, judge_url)
        summary = J.review(items, answers, client, cfg, tmp_path / "review.jsonl", lang, "extended")
        result = J.pairwise(items, reference, {it.question_id: "" for it in items}, client, cfg,
                            tmp_path / "pairwise.jsonl", lang)
        same = J.pairwise(items, reference, reference, client, cfg, tmp_path / "same.jsonl", lang)

    assert summary["failed"] == 0 and summary["n"] == len(items) and summary["judge_model"] == JUDGE_MODEL
    rows = {r["question_id"]: r for r in map(json.loads, (tmp_path / "review.jsonl").read_text().splitlines())}
    assert rows[items[0].question_id]["scores"] == [10.0, 10.0]  # the reference itself
    ref_score, other = rows[items[1].question_id]["scores"]
    assert ref_score == 10.0 and 1.0 <= other < 4.0
    assert 0 < summary["score"] < 1 and summary["per_type"]["conv"] == pytest.approx(1.0)

    assert result["failed"] == 0 and result["judged"] == len(items)
    assert result["win"] == len(items) and result["lose"] == 0 and result["order_agreement"] == 1.0
    assert same["failed"] == 0 and same["tie"] == len(items)  # identical answers: a tie in both orders


def test_judge_replies_parse_and_other_requests_are_refused() -> None:
    judge = FixtureJudge()
    for lang in ("en", "ko"):
        body = {"messages": review_messages("ctx", "q?", "a red ball", "a blue ball", lang)}
        scores = parse_review(judge(ChatRequest(body, {})).content)
        assert scores is not None and scores[0] == 10.0 and 1.0 < scores[1] < 10.0
    url = "data:image/png;base64," + base64.b64encode(_png()).decode()
    body = {"messages": pairwise_messages(url, "고양이는 어디에 있나요?", "소파 위에 있어요.",
                                          "It is on the sofa.", "ko")}
    assert parse_pairwise(judge(ChatRequest(body, {})).content) == "A"  # written in the question's language
    with fixture_endpoints() as (teacher_url, judge_url):
        for base_url in (teacher_url, judge_url):
            client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hello"}])
