"""The generator against a misbehaving teacher: injected 429s, 500s, malformed JSON and hangs;
Retry-After; the retry budget; the cost budget; API keys kept out of the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.datagen_util import build_small_world, content_key, fast_config, read_jsonl
from xllava.datagen.derive import derive_training_set
from xllava.datagen.generate import generate
from xllava.datagen.openai_server import ChatRequest, FaultConfig, ResponderError, ServerThread, create_app
from xllava.datagen.selection import select_images
from xllava.datagen.store import read_records
from xllava.world.teacher import start_world_teacher


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_small_world(tmp_path_factory.mktemp("dg-world"))


def test_injected_faults_every_pair_ends_valid_or_failed_with_a_reason(world, tmp_path):
    faults = FaultConfig(rate_429=0.10, rate_500=0.05, rate_malformed=0.05, rate_timeout=0.03,
                         retry_after_s=0.05, hang_s=4.0, seed=1)
    cfg = fast_config(timeout_s=1.0, max_attempts=8, concurrency=16)
    with start_world_teacher(world, faults) as server:
        summary = generate(cfg, world, tmp_path, server.base_url, progress=False)
        injected = dict(server.stats.faults)
    assert all(injected.get(f, 0) > 0 for f in ("429", "500", "malformed", "timeout")), injected
    # Each injected fault is a failed attempt for the client. (On a loaded machine a slow ordinary
    # answer can time out too, and the client may have given up on a fault before it was sent.)
    errors = summary["attempt_errors"]
    assert 0 < errors["http_429"] <= injected["429"] and 0 < errors["http_500"] <= injected["500"]
    assert 0 < errors["invalid_json"] <= injected["malformed"] and errors["timeout"] >= injected["timeout"]

    selected = select_images(world, cfg.selection).images
    pairs = {(im.image_id, task) for im in selected for task in cfg.tasks}
    records = read_records(tmp_path / "store.jsonl")
    assert len(records) == len(pairs) == summary["requested"]  # one record per pair, none lost
    assert {(r["image_id"], r["task"]) for r in records} == pairs
    for r in records:
        assert r["status"] in ("ok", "failed"), r
        if r["status"] == "failed":
            assert r["reason"] and r["attempts"] == cfg.teacher.max_attempts
        else:
            assert any(item["rejected"] is None for item in r["items"])
    # What survived the faults is exactly what the world says about those scenes.
    derive_training_set(tmp_path / "store.jsonl", tmp_path / "mvif.jsonl", world)
    derived = {content_key(r) for r in read_jsonl(tmp_path / "mvif.jsonl")}
    ok_scenes = {i for i, _ in pairs} - {r["image_id"] for r in records if r["status"] != "ok"}
    expected = {content_key(r) for r in read_jsonl(world / "instruct.jsonl") if Path(r["image"]).stem in ok_scenes}
    assert expected and expected <= derived


def test_retry_budget_ends_in_a_failed_record_with_the_last_reason(world, tmp_path):
    cfg = fast_config(max_attempts=3)
    cfg.tasks, cfg.selection.limit = ["object"], 2
    with start_world_teacher(world, FaultConfig(rate_500=1.0)) as server:
        summary = generate(cfg, world, tmp_path, server.base_url, progress=False)
        assert server.stats.faults["500"] == 2 * 3
    assert summary["failed"] == 2 and summary["failures_by_reason"] == {"http_500": 2}
    for r in read_records(tmp_path / "store.jsonl"):
        assert r["reason"].startswith("http_500: ") and r["reason"].endswith("(after 3 attempts)")


def test_retry_after_is_honoured(world, tmp_path):
    cfg = fast_config(concurrency=4, max_attempts=10)
    cfg.tasks, cfg.selection.limit = ["object", "atmosphere"], 4
    with start_world_teacher(world, FaultConfig(rate_429=0.5, retry_after_s=0.3, seed=1)) as server:
        summary = generate(cfg, world, tmp_path, server.base_url, progress=False)
        arrivals = server.stats.arrivals
    assert summary["ok"] == 8 and summary["attempt_errors"]["http_429"] > 0
    gaps = [later[0] - earlier[0] for times in arrivals.values()
            for earlier, later in zip(times, times[1:], strict=False) if earlier[1] == "429"]
    assert gaps and min(gaps) >= 0.3  # backoff base is 0.02 s: only Retry-After explains the wait


def test_budget_stops_before_crossing_and_a_later_run_continues(world, tmp_path):
    cfg = fast_config(concurrency=4, max_tokens=500)
    cfg.tasks, cfg.selection.limit = ["object"], 12
    cfg.prices["world-teacher"] = cfg.prices["world-teacher"].model_copy(
        update={"input_per_mtok": 1000.0, "output_per_mtok": 1000.0})  # ~$1-2 per request
    cfg.budget_usd = 6.0
    with start_world_teacher(world) as server:
        first = generate(cfg, world, tmp_path, server.base_url, progress=False)
        assert first["budget_stopped"] and first["cost_usd_total"] <= 6.0
        assert first["requested"] + first["not_started"] == 12 and first["not_started"] > 0
        done = {r["key"]: r for r in read_records(tmp_path / "store.jsonl")}
        assert all(r["status"] == "ok" and r["cost_usd"] > 0 for r in done.values())
        cfg.budget_usd = None
        second = generate(cfg, world, tmp_path, server.base_url, progress=False)
    assert second["already_finished"] == len(done) and second["requested"] == 12 - len(done)
    final = read_records(tmp_path / "store.jsonl")
    assert len({r["key"] for r in final}) == len(final) == 12
    assert all(r == done[r["key"]] for r in final if r["key"] in done)


def test_budget_vetoes_retries_of_billed_failures_and_a_later_run_asks_again(world, tmp_path):
    cfg = fast_config(max_attempts=6, max_tokens=500)
    cfg.tasks, cfg.selection.limit = ["object"], 1
    cfg.prices["world-teacher"] = cfg.prices["world-teacher"].model_copy(
        update={"input_per_mtok": 1000.0, "output_per_mtok": 1000.0})
    cfg.budget_usd = 4.0
    with start_world_teacher(world, FaultConfig(rate_malformed=1.0)) as server:  # billed, unusable answers
        first = generate(cfg, world, tmp_path, server.base_url, progress=False)
    (record,) = read_records(tmp_path / "store.jsonl")
    assert record["status"] == "failed" and record["reason"].startswith("budget: stopped before attempt")
    assert 1 < record["attempts"] < 6 and first["budget_stopped"] and 0 < first["cost_usd_total"] <= 4.0
    cfg.budget_usd = None
    with start_world_teacher(world) as server:
        second = generate(cfg, world, tmp_path, server.base_url, progress=False)
    assert second["requested"] == 1 and second["ok"] == 1  # stopped by the budget, so asked again
    assert second["cost_usd_total"] > first["cost_usd_total"]  # the first run's spending still counts


def test_api_key_never_reaches_store_or_summary(world, tmp_path, monkeypatch):
    secret = "sk-test-DO-NOT-LEAK-1234567890"
    monkeypatch.setenv("XLLAVA_TEST_KEY", secret)
    seen = []

    def echo_auth(request: ChatRequest):  # a proxy that quotes the credentials back in its error
        seen.append(request.headers.get("authorization", ""))
        raise ResponderError(401, f"invalid credentials: {request.headers.get('authorization')}")

    cfg = fast_config(api_key_env="XLLAVA_TEST_KEY")
    cfg.tasks, cfg.selection.limit = ["object"], 2
    with ServerThread(create_app(echo_auth)) as server:
        summary = generate(cfg, world, tmp_path, server.base_url, progress=False)
    assert seen and all(secret in s for s in seen)  # the key did go to the server ...
    assert summary["failed"] == 2 and summary["failures_by_reason"] == {"http_401": 2}
    store = (tmp_path / "store.jsonl").read_text()
    assert "***" in store and secret not in store  # ... and nowhere else
    assert secret not in json.dumps(summary)
