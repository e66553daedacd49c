"""The world teacher over real HTTP through the official openai client, and the recipe stage built on it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import openai
import pytest
from PIL import Image

from tests.datagen_util import build_small_world, content_key, fast_config, read_jsonl
from xllava.datagen.generate import generate
from xllava.datagen.openai_server import FaultConfig
from xllava.datagen.stage import run_datagen_stage
from xllava.datagen.store import read_records
from xllava.world.teacher import WorldTeacher, start_world_teacher


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_small_world(tmp_path_factory.mktemp("dg-world"))


def test_stage_over_http_reproduces_the_world_data_and_resumes(world, tmp_path):
    cfg = fast_config(model="world-teacher").model_copy(
        update={"selection": fast_config().selection.model_copy(update={"image_ids_file": "train_image_ids.txt"})})
    with start_world_teacher(world) as server:
        figures = run_datagen_stage(cfg, world, tmp_path, server.base_url, endpoint_id="world")
    gen = figures["generation"]
    train = {g["scene_id"] for g in json.loads((world / "scene_graphs.json").read_text()) if g["split"] == "train"}
    assert gen["images"]["selected"] == len(train) and gen["images"]["not_requested"] > 0  # eval scenes stay out
    assert gen["ok"] == gen["pairs"] == len(train) * 5 and gen["failed"] == gen["rejected"] == 0
    derived = read_jsonl(tmp_path / "instruct.jsonl")
    assert all(Path(r["image"]).stem in train for r in derived)
    # Every record the world writes directly (object, the rotating task, packed short answers) comes
    # over HTTP word for word; the generator also asks each scene for the task types it skipped.
    world_records = {content_key(r) for r in read_jsonl(world / "instruct.jsonl")}
    assert world_records <= {content_key(r) for r in derived}
    assert {r["task"] for r in derived} == {"object", "location", "atmosphere", "conversation", "short_answer"}
    assert all(r["teacher"] == "world-teacher" and r["source"] == "datagen" for r in derived)
    relations = {g["scene_id"]: len(g["relations"]) for g in json.loads((world / "scene_graphs.json").read_text())}
    location = [r for r in read_records(tmp_path / "store.jsonl") if r["task"] == "location"]
    assert location and any(r["scene_graph"] for r in location)  # the teacher writes the scene graph first
    assert all(len(r["scene_graph"]) == relations[r["image_id"]] for r in location)

    from xllava.train.data import load_samples  # the trainer reads the file as it is, images resolved

    samples = load_samples([tmp_path / "instruct.jsonl"], tasks=["short_answer"], languages=["en", "ko"])
    assert samples and all(s.lang in ("en", "ko") for s in samples)

    before = (tmp_path / "instruct.jsonl").read_text()
    with start_world_teacher(world) as server:  # another port, the same endpoint id: the store resumes
        again = run_datagen_stage(cfg, world, tmp_path, server.base_url, endpoint_id="world")["generation"]
    assert again["requested"] == 0 and again["already_finished"] == gen["pairs"]
    assert (tmp_path / "instruct.jsonl").read_text() == before


def test_json_mode_fallback_when_the_endpoint_has_no_structured_output(world, tmp_path):
    cfg = fast_config(concurrency=4)
    cfg.selection.limit = 4
    with start_world_teacher(world, FaultConfig(reject_json_schema=True)) as server:
        summary = generate(cfg, world, tmp_path, server.base_url, progress=False)
        assert server.stats.faults["ok"] >= 4 * 5
    assert summary["structured_output"] == "json_object" and summary["ok"] == 4 * 5
    records = read_records(tmp_path / "store.jsonl")
    assert all(r["attempts"] == 1 and r["structured_output"] == "json_object" for r in records)


def test_non_retryable_errors_fail_fast_with_their_reason(world, tmp_path):
    cfg = fast_config(max_attempts=5)
    cfg.languages, cfg.tasks = ["en", "fr"], ["object"]
    cfg.selection.limit = 3
    with start_world_teacher(world) as server:
        summary = generate(cfg, world, tmp_path, server.base_url, progress=False)
        assert sum(server.stats.faults.values()) == 3  # one request per pair, no retries
    assert summary["failed"] == 3 and summary["failures_by_reason"] == {"http_400": 3}
    for record in read_records(tmp_path / "store.jsonl"):
        assert record["attempts"] == 1 and "writes en, ko, zh only" in record["reason"]


def test_models_endpoint_and_recognition_of_reencoded_images(world):
    teacher = WorldTeacher(world)
    graph = json.loads((world / "scene_graphs.json").read_text())[3]
    buf = io.BytesIO()
    Image.open(world / graph["image"]).save(buf, format="PNG", compress_level=1)  # other bytes, same pixels
    assert buf.getvalue() != (world / graph["image"]).read_bytes()
    assert teacher.scene_of(buf.getvalue()).scene_id == graph["scene_id"]
    with start_world_teacher(world) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        assert [m.id for m in client.models.list()] == ["world-teacher"]
        with pytest.raises(openai.BadRequestError, match="not one of this world's scenes"):
            blank = io.BytesIO()
            Image.new("RGB", (8, 8)).save(blank, format="PNG")
            import base64

            url = "data:image/png;base64," + base64.b64encode(blank.getvalue()).decode()
            client.chat.completions.create(model="world-teacher", messages=[{"role": "user", "content": [
                {"type": "text", "text": "Task type: x (id: object)\nTarget languages: en (English)"},
                {"type": "image_url", "image_url": {"url": url}}]}])
