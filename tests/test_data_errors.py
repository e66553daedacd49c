"""Bad training records fail before training, naming the file, the line and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from xllava.train.data import DataError, load_samples


def _good(image: str = "a.png") -> dict:
    return {
        "id": "s1",
        "image": image,
        "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a ball"}],
        "lang": "en",
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    return tmp_path


def _write(folder: Path, lines: list[str]) -> Path:
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _bad(record: dict) -> str:
    return json.dumps(record)


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda r: r.update(image="missing.png"), "image", "does not exist"),
        (lambda r: r["conversations"][1].update(value="  "), "conversations[1].value", "empty turn"),
        (lambda r: r["conversations"][0].update(**{"from": "robot"}), "conversations[0].from", "unknown speaker"),
        (lambda r: r["conversations"][0].update(value="no image token"), "conversations", "exactly one <image>"),
        (lambda r: r.update(conversations=[]), "conversations", "non-empty"),
    ],
)
def test_bad_record_names_file_line_field(folder: Path, mutate, field: str, words: str) -> None:
    record = _good()
    mutate(record)
    path = _write(folder, [json.dumps(_good()), json.dumps(_good()), _bad(record)])
    with pytest.raises(DataError) as err:
        load_samples([path])
    assert err.value.file == str(path)
    assert err.value.line == 3
    assert err.value.field == field
    assert words in str(err.value) and "data.jsonl:3" in str(err.value)


def test_malformed_json_line(folder: Path) -> None:
    path = _write(folder, [json.dumps(_good()), '{"id": "s2", "conversations": [', json.dumps(_good())])
    with pytest.raises(DataError) as err:
        load_samples([path])
    assert (err.value.line, err.value.field) == (2, "<line>")
    assert "malformed JSON" in str(err.value)


def test_good_records_become_messages(folder: Path) -> None:
    path = _write(folder, [json.dumps(_good())])
    (sample,) = load_samples([path])
    assert sample.image == (folder / "a.png").resolve()
    assert sample.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What is it?"}]
    assert sample.messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "a ball"}]}


def test_korean_is_nfc_normalised(folder: Path) -> None:
    record = _good()
    decomposed = "\u1100\u1161\u11a8"  # 각 as conjoining jamo (NFD)
    record["conversations"][1]["value"] = decomposed
    (sample,) = load_samples([_write(folder, [json.dumps(record)])])
    assert sample.messages[1]["content"][0]["text"] == "각"


def test_bad_sample_in_pipeline_keeps_finished_stages(tmp_path: Path) -> None:
    """A bad line in stage-2 data stops the run with a named error; the world and stage 1 stay."""
    from tests.conftest import fast_recipe
    from xllava.pipeline import Pipeline

    recipe = fast_recipe(tmp_path, "stages=[world, datagen, align, instruct]", "model.projector_init=random")
    pipe = Pipeline(recipe, log=lambda _: None)
    Pipeline(recipe.model_copy(update={"stages": ["world", "datagen", "align"]}), log=lambda _: None).run()
    align_manifest = (tmp_path / "align" / "manifest.json").read_text()
    instruct = tmp_path / "datagen" / "instruct.jsonl"
    lines = instruct.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[2])
    broken["conversations"][0]["from"] = "narrator"
    lines[2] = json.dumps(broken, ensure_ascii=False)
    instruct.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        pipe.run()
    assert err.value.line == 3 and err.value.field == "conversations[0].from"
    assert (tmp_path / "align" / "manifest.json").read_text() == align_manifest
    assert (tmp_path / "align" / "model" / "model.safetensors").exists()
