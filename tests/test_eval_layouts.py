"""Benchmark files in the layouts the public benchmarks publish them (small samples written here from
the public specifications), the submission files of splits without answers, and the two modes of
every score."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.test_eval_loaders import png_bytes, write_lines
from xllava.eval import loaders as L
from xllava.eval.items import BenchmarkFormatError
from xllava.eval.stage import load_items, score_benchmark
from xllava.eval.submission import write_submission
from xllava.eval.suite_config import BenchmarkSpec

SHORT = "Answer the question using a single word or phrase."


def coco_folder(root: Path, split: str, ids: list[int]) -> Path:
    folder = root / split
    folder.mkdir(parents=True)
    for image_id in ids:
        (folder / f"COCO_{split}_{image_id:012d}.jpg").write_bytes(png_bytes())
    return folder


# ---------------------------------------------------------------- VQAv2


def test_vqav2_test_dev_reads_test2015_images_and_writes_the_evalai_file(tmp_path: Path) -> None:
    images = coco_folder(tmp_path, "test2015", [1, 2, 3])
    questions = tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json"
    questions.write_text(json.dumps({"data_subtype": "test-dev2015", "questions": [
        {"image_id": 1, "question": "How many dogs?", "question_id": 1000},
        {"image_id": 3, "question": "Is it red?", "question_id": 3000}]}))
    full = tmp_path / "v2_OpenEnded_mscoco_test2015_questions.json"
    full.write_text(json.dumps({"data_subtype": "test2015", "questions": [
        {"image_id": i, "question": "q", "question_id": i * 1000} for i in (1, 2, 3)]}))
    items = L.load_vqav2(questions, None, images)
    assert [it.image.name for it in items] == ["COCO_test2015_000000000001.jpg", "COCO_test2015_000000000003.jpg"]
    assert all(not it.answers for it in items) and items[0].prompt == f"How many dogs?\n{SHORT}"
    spec = BenchmarkSpec(format="vqav2", questions=str(questions), submission_questions=str(full))
    result = write_submission(spec, "en", items, {"1000": "Two dogs.", "3000": "Yes"}, tmp_path / "out")
    rows = json.loads(Path(result["submission"]).read_text())
    # EvalAI's answer processing, as LLaVA submits; every test2015 question listed
    assert rows == [{"question_id": 1000, "answer": "2 dogs"}, {"question_id": 3000, "answer": "yes"},
                    {"question_id": 2000, "answer": ""}]
    assert result["score"] is None and "EvalAI" in result["protocol"] and result["submission"] in result["protocol"]


def test_vqav2_bad_annotation_names_file_key_and_field(tmp_path: Path) -> None:
    images = coco_folder(tmp_path, "val2014", [1])
    questions = tmp_path / "q.json"
    questions.write_text(json.dumps({"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "q?", "question_id": 1}]}))
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps({"annotations": [{"question_id": 1, "answers": [{"answer_id": 1}]}]}))
    with pytest.raises(BenchmarkFormatError, match=r"a\.json, annotations\[0\]\.answers\[0\]: field 'answer'"):
        L.load_vqav2(questions, annotations, images)
    questions.write_text(json.dumps({"data_subtype": "val2014", "questions": [{"image_id": 7, "question": "q?",
                                                                              "question_id": 1}]}))
    with pytest.raises(BenchmarkFormatError, match=r"q\.json, questions\[0\]: field 'image_id': no image for id 7"):
        L.load_vqav2(questions, None, images)


def test_vqav2_llava_question_file_with_annotations(tmp_path: Path) -> None:
    images = coco_folder(tmp_path, "val2014", [1])
    questions = write_lines(tmp_path / "llava_vqav2_mscoco_val2014.jsonl", [
        {"question_id": 1000, "image": "COCO_val2014_000000000001.jpg", "text": f"How many?\n{SHORT}"}])
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps({"annotations": [{"question_id": 1000, "answer_type": "number",
                                                        "question_type": "how many",
                                                        "answers": [{"answer": "2", "answer_id": k} for k in range(10)]}]}))
    (item,) = L.load_vqav2(questions, annotations, images)
    assert (item.prompt, item.answers, item.category) == (f"How many?\n{SHORT}", ["2"] * 10, "number")
    spec = BenchmarkSpec(format="vqav2", questions=str(questions))
    assert score_benchmark(spec, "en", [(item, "Two")])["score"] == 1.0


# ---------------------------------------------------------------- POPE


def pope_rows(n: int, label: str, text: str = "Is there a dog in the image?") -> list[dict]:
    return [{"question_id": i + 1, "image": "COCO_val2014_000000000001.jpg", "text": text, "label": label}
            for i in range(n)]


def test_pope_folder_of_official_files_gets_unique_ids_and_file_categories(tmp_path: Path) -> None:
    images = coco_folder(tmp_path, "val2014", [1])
    folder = tmp_path / "output" / "coco"
    folder.mkdir(parents=True)
    for category, label in (("adversarial", "yes"), ("popular", "no"), ("random", "yes")):
        write_lines(folder / f"coco_pope_{category}.json", pope_rows(2, label))
    items = L.load_pope(folder, images)
    assert [it.question_id for it in items] == ["adversarial-1", "adversarial-2", "popular-1", "popular-2",
                                                "random-1", "random-2"]
    assert [it.category for it in items[::2]] == ["adversarial", "popular", "random"]
    (single,) = L.load_pope(write_lines(tmp_path / "coco_pope_popular.json", pope_rows(1, "no")), images)
    assert single.category == "popular" and single.question_id == "1"


def test_pope_json_array_and_no_double_post_prompt(tmp_path: Path) -> None:
    images = coco_folder(tmp_path, "val2014", [1])
    path = tmp_path / "coco_pope_random.json"
    path.write_text(json.dumps(pope_rows(2, "yes", f"Is there a dog in the image?\n{SHORT}")))
    items = L.load_pope(path, images)
    assert len(items) == 2 and items[0].prompt == f"Is there a dog in the image?\n{SHORT}"
    path.write_text(json.dumps([{"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "q",
                                 "label": "maybe"}]))
    with pytest.raises(BenchmarkFormatError, match=r"coco_pope_random\.json, \[0\]: field 'label'"):
        L.load_pope(path, images)


def test_pope_llava_layout_takes_labels_from_the_annotation_folder(tmp_path: Path) -> None:
    images = coco_folder(tmp_path, "val2014", [1, 2])
    ann = tmp_path / "coco"
    ann.mkdir()
    write_lines(ann / "coco_pope_adversarial.json", [
        {"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "q", "label": "yes"},
        {"question_id": 2, "image": "COCO_val2014_000000000002.jpg", "text": "q", "label": "no"}])
    write_lines(ann / "coco_pope_random.json", [
        {"question_id": 1, "image": "COCO_val2014_000000000002.jpg", "text": "q", "label": "no"}])
    questions = write_lines(tmp_path / "llava_pope_test.jsonl", [
        {"question_id": 10, "image": "COCO_val2014_000000000001.jpg", "text": f"Is there a cat?\n{SHORT}",
         "category": "adversarial"},
        {"question_id": 11, "image": "COCO_val2014_000000000002.jpg", "text": f"Is there a cat?\n{SHORT}",
         "category": "random"},
        {"question_id": 12, "image": "COCO_val2014_000000000002.jpg", "text": f"Is there a cat?\n{SHORT}",
         "category": "adversarial"}])
    items = L.load_pope(questions, images, annotations=ann)
    assert [(it.question_id, it.category, it.answers[0]) for it in items] == [
        ("10", "adversarial", "yes"), ("11", "random", "no"), ("12", "adversarial", "no")]
    assert items[0].prompt.count(SHORT) == 1
    write_lines(ann / "coco_pope_random.json", [
        {"question_id": 1, "image": "COCO_val2014_000000000001.jpg", "text": "q", "label": "no"}])
    with pytest.raises(BenchmarkFormatError, match=r"coco_pope_random\.json, line 1: field 'image'"):
        L.load_pope(questions, images, annotations=ann)


# ---------------------------------------------------------------- GQA


def gqa_question(image: str, answer: str, balanced: bool, structural: str = "query") -> dict:
    return {"imageId": image, "question": "What color is it?", "answer": answer, "isBalanced": balanced,
            "types": {"structural": structural, "semantic": "attr", "detailed": "color"}}


def test_gqa_all_questions_keeps_balanced_ones_and_llava_file_is_scorable(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "n1.jpg").write_bytes(png_bytes())
    all_q = tmp_path / "testdev_all_questions.json"
    all_q.write_text(json.dumps({"201": gqa_question("n1", "red", True), "202": gqa_question("n1", "blue", False),
                                 "203": gqa_question("n1", "yes", True, "verify")}))
    items = L.load_gqa(all_q, images)
    assert [it.question_id for it in items] == ["201", "203"]
    assert items[0].category == "query" and items[0].extra["semantic"] == "attr"
    assert len(L.load_gqa(all_q, images, balanced_only=False)) == 3
    llava = write_lines(tmp_path / "llava_gqa_testdev_balanced.jsonl", [
        {"question_id": "201", "image": "n1.jpg", "text": f"What color is it?\n{SHORT}"},
        {"question_id": "202", "image": "n1.jpg", "text": f"What color is it?\n{SHORT}"}])
    items = L.load_gqa(llava, images, annotations=all_q)
    assert [(it.question_id, it.answers, it.category) for it in items] == [("201", ["red"], "query")]
    spec = BenchmarkSpec(format="gqa", questions=str(llava), annotations=str(all_q))
    score = score_benchmark(spec, "en", [(items[0], "Red.")])
    assert score["score"] == 1.0 and score["mode"] == "official" and set(score["modes"]) == {"official", "extended"}
    unanswered = L.load_gqa(llava, images)
    result = write_submission(spec, "en", unanswered, {"201": "Red.", "202": "Blue"}, tmp_path / "out")
    assert json.loads(Path(result["submission"]).read_text()) == [
        {"questionId": "201", "prediction": "red"}, {"questionId": "202", "prediction": "blue"}]


# ---------------------------------------------------------------- MMBench test split


def mmbench_items(tmp_path: Path) -> list:
    import base64

    cell = base64.b64encode(png_bytes()).decode()
    tsv = tmp_path / "MMBench_TEST_EN.tsv"
    tsv.write_text("index\tquestion\thint\tA\tB\tC\tD\timage\tcategory\n"
                   f"0\tWhat colour?\tnan\tred\tblue\tnan\tnan\t{cell}\tattr\n"
                   f"1\tWhich one?\tA hint\tcat\tdog\tbird\tfish\t0\tobj\n", encoding="utf-8")
    return L.load_mmbench_tsv(tsv, tmp_path / "cache")


def test_mmbench_test_split_writes_the_submission_spreadsheet(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    items = mmbench_items(tmp_path)
    spec = BenchmarkSpec(format="mmbench", questions="x.tsv")
    result = write_submission(spec, "en", items, {"0": "A", "1": "정답은 B입니다"}, tmp_path / "out")
    assert result["submission"].endswith(".xlsx")
    rows = list(openpyxl.load_workbook(result["submission"]).active.iter_rows(values_only=True))
    assert rows[0] == ("index", "question", "A", "B", "C", "D", "prediction")
    assert rows[2] == (1, "Which one?", "cat", "dog", "bird", "fish", "정답은 B입니다")


def test_mmbench_submission_without_openpyxl_is_a_tsv_and_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import fails as when it is not installed
    items = mmbench_items(tmp_path)
    result = write_submission(BenchmarkSpec(format="mmbench", questions="x.tsv"), "en", items,
                              {"0": "A", "1": "B"}, tmp_path / "out")
    assert result["submission"].endswith(".tsv") and "openpyxl is not installed" in result["protocol"]
    lines = Path(result["submission"]).read_text().splitlines()
    assert lines[0].split("\t") == ["index", "question", "A", "B", "C", "D", "prediction"]


# ---------------------------------------------------------------- LLaVA-Bench


def test_llava_bench_in_the_wild_images_folder_and_coco_variant(tmp_path: Path) -> None:
    bench = tmp_path / "llava-bench-in-the-wild"
    (bench / "images").mkdir(parents=True)
    (bench / "images" / "001.jpg").write_bytes(png_bytes())
    write_lines(bench / "questions.jsonl", [{"question_id": 0, "image": "001.jpg", "text": "Describe it.",
                                             "category": "detail"}])
    write_lines(bench / "context.jsonl", [{"id": "001", "image": "001.jpg", "caption": "A red ball."}])
    write_lines(bench / "answers_gpt4.jsonl", [{"question_id": 0, "text": "A red ball on grass."}])
    spec = BenchmarkSpec(format="llava_bench", questions=str(bench / "questions.jsonl"),
                         context=str(bench / "context.jsonl"), references=str(bench / "answers_gpt4.jsonl"))
    paths = {k: Path(v) for k, v in spec.paths().items()}
    (item,) = load_items(spec, None, paths, tmp_path / "out")
    assert item.image == bench / "images" / "001.jpg" and item.extra["variant"] == "in_the_wild"

    images = coco_folder(tmp_path, "val2014", [296284])
    name = "COCO_val2014_000000296284.jpg"
    questions = write_lines(tmp_path / "qa90_questions.jsonl", [
        {"question_id": 0, "image": name, "text": "What is in the cabinet?", "category": "conv"}])
    context = write_lines(tmp_path / "caps_boxes_coco2014_val_80.jsonl", [
        {"id": "296284", "image": name, "captions": ["Donuts in a case.", "A bakery display."],
         "instances": [{"category": "donut", "bbox": [0.37, 0.584, 0.504, 0.709]}]}])
    refs = write_lines(tmp_path / "qa90_gpt4_answer.jsonl", [{"question_id": 0, "text": "Donuts."}])
    (coco,) = L.load_llava_bench(questions, context, refs, images)
    assert coco.extra["variant"] == "coco"
    assert coco.extra["context"] == "Donuts in a case.\nA bakery display.\n\ndonut: [0.37, 0.584, 0.504, 0.709]"
    write_lines(context, [{"id": "296284", "image": name, "captions": "one string"}])
    with pytest.raises(BenchmarkFormatError, match=r"caps_boxes_coco2014_val_80\.jsonl, line 1: field 'captions'"):
        L.load_llava_bench(questions, context, refs, images)


# ---------------------------------------------------------------- modes in the recipe


def test_scoring_vocabulary_and_old_recipes() -> None:
    assert BenchmarkSpec(format="pope", questions="q").scoring == "official"
    assert BenchmarkSpec(format="pope", questions="q", scoring="extended").scoring == "extended"
    assert BenchmarkSpec(format="llava", questions="q", scoring="exact_match").scoring == "exact_match"
    with pytest.raises(ValueError, match="exact_match is for the llava format"):
        BenchmarkSpec(format="pope", questions="q", scoring="exact_match")
    with pytest.raises(ValueError, match="official"):
        BenchmarkSpec(format="pope", questions="q", scoring="lenient")


def test_preflight_sniffs_the_published_layouts(tmp_path: Path) -> None:
    from xllava.preflight import sniff_benchmark

    array = tmp_path / "coco_pope_random.json"
    array.write_text(json.dumps(pope_rows(2, "yes")))
    assert sniff_benchmark("pope", "questions", array) is None
    llava = write_lines(tmp_path / "llava_pope_test.jsonl", [{"question_id": 1, "image": "a.jpg", "text": "q",
                                                              "category": "random"}])
    assert sniff_benchmark("pope", "questions", llava, labels_apart=True) is None
    assert "line 1: field 'label'" in sniff_benchmark("pope", "questions", llava)
    gqa = write_lines(tmp_path / "llava_gqa_testdev_balanced.jsonl", [{"question_id": "1", "image": "n1.jpg"}])
    assert "line 1: field 'text'" in sniff_benchmark("gqa", "questions", gqa)
