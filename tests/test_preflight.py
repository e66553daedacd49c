"""Bad inputs stop `xllava run` before any stage: every missing file, malformed data file, unreachable
endpoint and unset key at once, each named by its recipe field and its path or URL; nothing already in
the run directory is touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.fixture_endpoints import start_fixture_teacher
from xllava.cli import app
from xllava.pipeline import Pipeline, load_recipe
from xllava.preflight import InputError, check_inputs

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "recipes" / "x-llava-13b.yaml"


def paper(tmp_path: Path, *extra: str):
    return load_recipe(PAPER, [f"paths.data={tmp_path / 'data'}", f"paths.models={tmp_path / 'models'}",
                               f"output_dir={tmp_path / 'run'}", *extra])


def test_every_missing_input_is_listed_with_its_field(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    problems = check_inputs(paper(tmp_path, "datagen.teacher.base_url=http://127.0.0.1:9/v1",
                                  "eval.judge.base_url=http://127.0.0.1:9/v1"))
    text = "\n".join(problems)
    for field, path in [("model.llm.path", "models/llama-2-13b"), ("vocab.corpus", "data/text/ko.txt"),
                        ("lm.sources[1].path", "data/text/en.txt"), ("datagen.images", "data/vg"),
                        ("align.data[0]", "data/llava-cc3m-595k-ek.json"),
                        ("instruct.data[0].image_root", "data/coco/train2017"),
                        ("eval.benchmarks[5].questions", "data/eval/gqa/testdev_balanced_questions.json")]:
        assert any(p.startswith(field + ":") and str(tmp_path / path) in p for p in problems), (field, text)
    # the stage-2 file the datagen stage will write is not reported missing
    assert "instruct.data[1]" not in text
    # unreachable endpoints and the unset key, by URL and by variable name
    assert "datagen.teacher.base_url: http://127.0.0.1:9/v1 is unreachable" in text
    assert "eval.judge.base_url: http://127.0.0.1:9/v1 is unreachable" in text
    assert "datagen.teacher.api_key_env: environment variable OPENAI_API_KEY is not set" in text


def test_a_reachable_endpoint_with_its_key_passes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XLLAVA_TEST_KEY", "sk-test")
    with start_fixture_teacher() as server:
        problems = check_inputs(paper(tmp_path, f"datagen.teacher.base_url={server.base_url}",
                                      "datagen.teacher.api_key_env=XLLAVA_TEST_KEY"), only=["datagen"])
    assert not any(p.startswith("datagen.teacher") for p in problems), problems
    assert any(p.startswith("datagen.images:") for p in problems)


def test_a_malformed_data_file_names_file_line_and_field(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "llava-cc3m-595k-ek.json").write_text("id,image,caption\n1,a.jpg,a cat\n")
    (data / "cc3m").mkdir()
    (data / "coco" / "train2017").mkdir(parents=True)
    (data / "llava-instruct-158k-ek.json").write_text(json.dumps([{"id": "x", "image": "missing.jpg",
                                                                   "conversations": [{"from": "human", "value": "<image>\nhi"},
                                                                                     {"from": "gpt", "value": "hello"}]}]))
    problems = check_inputs(paper(tmp_path), only=["align", "instruct"])
    align = next(p for p in problems if p.startswith("align.data[0]:"))
    assert "llava-cc3m-595k-ek.json" in align and "malformed JSON" in align
    instruct = next(p for p in problems if p.startswith("instruct.data[0]:"))
    assert "llava-instruct-158k-ek.json:1: field 'image'" in instruct and "missing.jpg" in instruct


def test_the_run_stops_before_any_stage_and_keeps_what_exists(tmp_path: Path) -> None:
    recipe = paper(tmp_path, "datagen.teacher.base_url=http://127.0.0.1:9/v1")
    done = tmp_path / "run" / "vocab"
    done.mkdir(parents=True)
    (done / "manifest.json").write_text('{"stage": "vocab"}')
    with pytest.raises(InputError) as err:
        Pipeline(recipe, log=lambda _: None).run()
    assert "nothing was run" in str(err.value) and len(err.value.problems) > 10
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["vocab"]  # no stage started
    assert (done / "manifest.json").read_text() == '{"stage": "vocab"}'
    result = CliRunner().invoke(app, ["run", str(PAPER), "--set", f"paths.data={tmp_path / 'data'}",
                                      "--set", f"output_dir={tmp_path / 'run'}"])
    assert result.exit_code == 2 and "vocab.corpus:" in result.output


def test_world_endpoint_needs_the_world_stage(tmp_path: Path) -> None:
    problems = check_inputs(paper(tmp_path, "datagen.teacher.base_url=world"), only=["datagen"])
    assert any("datagen.teacher.base_url: 'world'" in p for p in problems)


def test_undefined_path_key_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"vocab.corpus: \$\{corpora\} is not defined in `paths`"):
        paper(tmp_path, "vocab.corpus=${corpora}/ko.txt")


def test_a_finished_stage_is_not_checked_again(tmp_path: Path) -> None:
    """A completed datagen stage needs neither its teacher nor its key on a later run."""
    from xllava.pipeline import stage_digests

    recipe = paper(tmp_path, "datagen.teacher.base_url=http://127.0.0.1:9/v1")
    digests = dict(stage_digests(recipe))
    for stage in ("vocab", "lm", "datagen"):
        (tmp_path / "run" / stage).mkdir(parents=True)
        (tmp_path / "run" / stage / "manifest.json").write_text(json.dumps({"config_hash": digests[stage]}))
    pipeline = Pipeline(recipe, log=lambda _: None)
    assert pipeline.pending() == ["align", "instruct", "eval", "report"]
    problems = check_inputs(recipe, pipeline.pending())
    assert problems and not any(p.split(".")[0] in ("vocab", "lm", "datagen") for p in problems)
    assert "datagen" in pipeline.pending(force=True)


def test_a_benchmark_file_in_the_wrong_format_is_named(tmp_path: Path) -> None:
    ev = tmp_path / "data" / "eval"
    (ev / "pope" / "coco").mkdir(parents=True)  # the folder of the official files
    (ev / "pope" / "coco" / "coco_pope_random.json").write_text('{"question_id": 1, "image": "a.jpg", "text": "ball?"}\n')
    (ev / "gqa").mkdir()
    (ev / "gqa" / "testdev_balanced_questions.json").write_text("question,imageId\n")
    (ev / "mmbench").mkdir()
    (ev / "mmbench" / "mmbench_dev_20230712.tsv").write_text("index\tquestion\tA\tB\tanswer\n")
    problems = "\n".join(check_inputs(paper(tmp_path), only=["eval"]))
    assert "eval.benchmarks[6].questions: " in problems and "line 1: field 'label': missing" in problems
    assert "eval.benchmarks[5].questions: " in problems and "testdev_balanced_questions.json: not JSON" in problems
    assert "eval.benchmarks[8].questions: " in problems and "header: field 'image': missing column" in problems
