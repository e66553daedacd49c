"""Loaders for the public benchmark formats (hand-made files and the world's instances), with errors
that name the file, the line and the field."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from xllava.eval import loaders as L
from xllava.eval.items import BenchmarkFormatError
from xllava.world.benchmarks import write_world_benchmarks


@pytest.fixture(scope="module")
def small_world(tmp_path_factory) -> Path:
    """A small world (about a second to build); test_judge.py imports this fixture too."""
    from xllava.world import build_world
    from xllava.world.config import WorldConfig

    out = tmp_path_factory.mktemp("small-world")
    build_world(out, WorldConfig(n_train_scenes=24, n_eval_scenes=6, eval_questions_per_type=2, languages=["en", "ko"]))
    return out


def png_bytes(colour: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes())
    (folder / "COCO_val2014_000000000042.jpg").write_bytes(png_bytes("blue"))
    return folder


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------- LLaVA question JSONL


def test_llava_questions(tmp_path: Path, images: Path) -> None:
    path = write_lines(tmp_path / "q.jsonl", [
        {"question_id": 7, "image": "a.png", "text": "공은 무슨 색이에요?", "answer": "빨간색", "category": "colour"},
        {"question_id": "x", "image": "a.png", "text": "What is it?", "answers": ["ball", "a ball"]},
    ])
    items = L.load_llava_questions(path, images)
    assert [it.question_id for it in items] == ["7", "x"]
    assert items[0].lang == "ko" and items[1].lang == "en"  # detected from the question
    assert items[0].answers == ["빨간색"] and items[1].answers == ["ball", "a ball"]
    assert items[0].image == images / "a.png" and items[0].prompt == items[0].question
    with_post = L.load_llava_questions(path, images, lang="en", post_prompt="One word.")
    assert with_post[1].prompt == "What is it?\nOne word." and with_post[0].lang == "en"


@pytest.mark.parametrize(("line", "message"), [
    ('{"question_id": 1, "image": "a.png"}', "line 2: field 'text': missing"),
    ('{"question_id": 1, "image": "nope.png", "text": "q"}', "line 2: field 'image': image"),
    ('{"question_id": 1, "image": "a.png", "text": "q"', "line 2: not JSON"),
    ('{"question_id": 1, "image": "a.png", "text": ""}', "line 2: field 'text': expected a non-empty"),
    ('{"question_id": 1, "image": "a.png", "text": "q", "answers": "x"}', "line 2: field 'answers'"),
    ('[1, 2]', "line 2: each line must be a JSON object"),
])
def test_llava_question_errors_name_file_line_field(tmp_path: Path, images: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [{"question_id": 0, "image": "a.png", "text": "ok"}, line])
    with pytest.raises(BenchmarkFormatError) as err:
        L.load_llava_questions(path, images)
    assert str(path) in str(err.value) and message in str(err.value)


# ---------------------------------------------------------------- VQAv2, GQA, POPE


def test_vqav2(tmp_path: Path, images: Path) -> None:
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps({"data_subtype": "val2014", "questions": [
        {"question_id": 420, "image_id": 42, "question": "What colour?"},
        {"question_id": 1, "image_id": "a", "question": "How many?"}]}))
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps({"annotations": [
        {"question_id": 420, "answer_type": "other", "answers": [{"answer": "blue", "answer_id": i} for i in range(10)]},
        {"question_id": 1, "answer_type": "number", "answers": [{"answer": "2", "answer_id": i} for i in range(10)]}]}))
    items = L.load_vqav2(questions, annotations, images)
    assert items[0].image.name == "COCO_val2014_000000000042.jpg"  # COCO naming for integer ids
    assert items[1].image == images / "a.png"
    assert len(items[0].answers) == 10 and items[1].category == "number"
    assert items[0].prompt.endswith(L.SHORT_ANSWER_PROMPT["en"])
    assert L.load_vqav2(questions, None, images)[0].answers == []  # a test split: questions only
    annotations.write_text(json.dumps({"annotations": [{"question_id": 420, "answers": [{"answer": "x"}]}]}))
    with pytest.raises(BenchmarkFormatError, match="no annotation for question 1"):
        L.load_vqav2(questions, annotations, images)
    annotations.write_text(json.dumps({"annotations": [{"question_id": 420, "answers": [{"id": 1}]}]}))
    with pytest.raises(BenchmarkFormatError, match=r"annotations\[0\]\.answers\[0\].*'answer'"):
        L.load_vqav2(questions, annotations, images)


def test_gqa(tmp_path: Path, images: Path) -> None:
    path = tmp_path / "gqa.json"
    path.write_text(json.dumps({"201": {"imageId": "a", "question": "Is it red?", "answer": "yes",
                                       "types": {"structural": "verify", "detailed": "existRel"}}}))
    (item,) = L.load_gqa(path, images, post_prompt=None)
    assert (item.question_id, item.answers, item.category, item.prompt) == ("201", ["yes"], "verify", "Is it red?")
    path.write_text(json.dumps({"202": {"imageId": "zzz", "question": "q"}}))
    with pytest.raises(BenchmarkFormatError, match="question 202: field 'imageId': no image zzz"):
        L.load_gqa(path, images)


def test_pope(tmp_path: Path, images: Path) -> None:
    path = write_lines(tmp_path / "pope.jsonl", [
        {"question_id": 1, "image": "a.png", "text": "Is there a dog in the image?", "label": "Yes",
         "category": "adversarial"}])
    (item,) = L.load_pope(path, images)
    assert item.answers == ["yes"] and item.category == "adversarial"
    write_lines(path, [{"question_id": 1, "image": "a.png", "text": "q?", "label": "maybe"}])
    with pytest.raises(BenchmarkFormatError, match="line 1: field 'label': expected 'yes' or 'no'"):
        L.load_pope(path, images)


# ---------------------------------------------------------------- MMBench TSV


def mmbench_tsv(path: Path, rows: list[dict]) -> Path:
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"]
    lines = ["\t".join(header)] + ["\t".join(str(r.get(h, "")) for h in header) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_mmbench_tsv_with_circular_copies_and_image_references(tmp_path: Path) -> None:
    image = base64.b64encode(png_bytes()).decode()
    path = mmbench_tsv(tmp_path / "mmb.tsv", [
        {"index": 3, "question": "공은 무슨 색이에요?", "hint": "nan", "A": "빨간색", "B": "파란색", "C": "nan",
         "answer": "A", "category": "colour", "image": image},
        {"index": 1000003, "question": "공은 무슨 색이에요?", "A": "파란색", "B": "빨간색", "answer": "B",
         "category": "colour", "image": "3"},
    ])
    items = L.load_mmbench_tsv(path, tmp_path / "cache")
    assert [it.extra["g_index"] for it in items] == [3, 3]
    assert items[0].extra["options"] == {"A": "빨간색", "B": "파란색"}  # nan cells are absent options
    assert items[0].image == items[1].image == tmp_path / "cache" / "3.png"
    assert items[0].lang == "ko"
    assert items[0].prompt == "공은 무슨 색이에요?\nA. 빨간색\nB. 파란색\n" + L.CHOICE_PROMPT["ko"]


@pytest.mark.parametrize(("row", "message"), [
    ({"index": 1, "question": "q", "A": "x", "B": "y", "image": "!!notbase64!!" * 10}, "row 1: field 'image': not valid base64"),
    ({"index": 1, "question": "q", "A": "x", "B": "y", "image": "99"}, "row 1: field 'image': refers to row index 99"),
    ({"index": 1, "question": "q", "A": "x", "B": "y", "answer": "C", "image": "x" * 80}, "field 'answer'"),
    ({"index": "one", "question": "q", "A": "x", "B": "y"}, "row 1: field 'index'"),
    ({"index": 1, "question": "q", "A": "x", "image": "x" * 80}, "at least two options"),
])
def test_mmbench_errors(tmp_path: Path, row: dict, message: str) -> None:
    path = mmbench_tsv(tmp_path / "bad.tsv", [row])
    with pytest.raises(BenchmarkFormatError) as err:
        L.load_mmbench_tsv(path, tmp_path / "cache")
    assert str(path) in str(err.value) and message in str(err.value)


# ---------------------------------------------------------------- LLaVA-Bench


def test_llava_bench(tmp_path: Path, images: Path) -> None:
    q = write_lines(tmp_path / "questions.jsonl", [{"question_id": 0, "image": "a.png", "text": "Describe it.",
                                                    "category": "detail"}])
    c = write_lines(tmp_path / "context.jsonl", [{"id": "a", "image": "a.png", "caption": "A red square."}])
    a = write_lines(tmp_path / "answers.jsonl", [{"question_id": 0, "text": "It is a red square."}])
    (item,) = L.load_llava_bench(q, c, a, images)
    assert item.extra == {"context": "A red square.", "reference": "It is a red square.",
                          "variant": "in_the_wild"} and item.category == "detail"
    write_lines(c, [{"image": "b.png", "caption": "x"}])
    with pytest.raises(BenchmarkFormatError, match="line 1: field 'image': 'a.png' has no caption"):
        L.load_llava_bench(q, c, a, images)


# ---------------------------------------------------------------- the world's instances


def test_world_instances_load_in_every_format(small_world: Path, tmp_path: Path) -> None:
    files = write_world_benchmarks(small_world, tmp_path / "b", ["en", "ko"])
    images = Path(files["images"])
    bench = {lang: [json.loads(x) for x in (small_world / "bench" / f"{lang}.jsonl").read_text().splitlines()]
             for lang in ("en", "ko")}
    for lang in ("en", "ko"):
        n = len(bench[lang])
        short = L.load_llava_questions(Path(files["short"][lang]["questions"]), small_world)
        vqa = L.load_vqav2(Path(files["vqav2"][lang]["questions"]), Path(files["vqav2"][lang]["annotations"]), images)
        gqa = L.load_gqa(Path(files["gqa"][lang]["questions"]), images)
        pope = L.load_pope(Path(files["pope"][lang]["questions"]), images)
        mmb = L.load_mmbench_tsv(Path(files["mmbench"][lang]["tsv"]), tmp_path / "cache" / lang)
        lb = files["llava_bench"][lang]
        wild = L.load_llava_bench(Path(lb["questions"]), Path(lb["context"]), Path(lb["answers_gpt4"]), images)
        assert len(short) == len(vqa) == len(gqa) == n
        assert {it.lang for it in [*vqa, *gqa, *pope, *mmb, *wild]} == {lang}  # detected from the text
        # ten annotators; the gold word is the most common answer
        assert all(len(it.answers) == 10 and it.answers.count(row["answer"]) >= 6 for it, row in zip(vqa, bench[lang], strict=True))
        assert [it.answers[0] for it in gqa] == [r["answer"].lower() for r in bench[lang]]
        # POPE: balanced yes/no within each sampling category
        for category in ("random", "popular", "adversarial"):
            labels = [it.answers[0] for it in pope if it.category == category]
            assert labels and labels.count("yes") == labels.count("no")
        # MMBench: every rotation of every question, the gold option moving with it
        assert len({it.extra["g_index"] for it in mmb}) == n
        for it in mmb:
            assert it.extra["options"][it.answers[0]] == bench[lang][it.extra["g_index"]]["answer"]
        assert {it.category for it in wild} == {"conv", "detail", "complex"}
        assert all(it.extra["context"] and it.extra["reference"] for it in wild)
    # the same questions in both languages: same options order, same POPE plan
    en = L.load_mmbench_tsv(Path(files["mmbench"]["en"]["tsv"]), tmp_path / "c2")
    ko = L.load_mmbench_tsv(Path(files["mmbench"]["ko"]["tsv"]), tmp_path / "c3")
    assert [it.answers for it in en] == [it.answers for it in ko]
