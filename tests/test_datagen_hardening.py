"""The generator against a teacher that answers badly but with status 200: a real proxy on loopback in
front of the world teacher trickles its body, drops or falsifies its usage, or replaces it with an
HTML page, a body without choices or a huge answer. Each attempt ends within its deadline, the cost
never trusts what it cannot believe, and every reason says what came back. The derived training set
keeps the newest successful answer of a key that later failed."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.datagen_util import build_small_world, fast_config, read_jsonl
from xllava.datagen.config import ModelPrice
from xllava.datagen.derive import derive_training_set
from xllava.datagen.generate import generate
from xllava.datagen.selection import select_images
from xllava.datagen.store import Store, read_records
from xllava.world.teacher import start_world_teacher


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_small_world(tmp_path_factory.mktemp("dg-hard-world"))


@pytest.fixture(scope="module")
def teacher(world):
    with start_world_teacher(world) as server:
        yield server.base_url


class Mangler:
    """An HTTP proxy that forwards each request to the teacher and mangles the reply per `mode`."""

    def __init__(self, upstream: str):
        self.upstream, self.mode = upstream.rstrip("/"), "pass"
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    reply = json.load(r)
                proxy.send(self, reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def send(self, h: BaseHTTPRequestHandler, reply: dict) -> None:
        ctype = "application/json"
        if self.mode == "no_usage":
            reply.pop("usage", None)
        elif self.mode == "negative_usage":
            reply["usage"] = {"prompt_tokens": -1000, "completion_tokens": -500, "total_tokens": -1500}
        elif self.mode == "no_choices":
            reply.pop("choices")
        elif self.mode == "huge":
            reply["choices"][0]["message"]["content"] = "x" * 2_000_000
        raw = json.dumps(reply).encode()
        if self.mode == "html":
            raw, ctype = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        if self.mode == "trickle":  # every read gets bytes well within timeout_s; the whole body never does
            for i in range(0, len(raw), 50):
                h.wfile.write(raw[i:i + 50])
                h.wfile.flush()
                time.sleep(0.1)
        else:
            h.wfile.write(raw)

    def __enter__(self) -> Mangler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def mangler(teacher):
    with Mangler(teacher) as m:
        yield m


def few_images(world: Path, cfg, n: int = 3) -> set[str]:
    return {im.image_id for im in select_images(world, cfg.selection).images[:n]}


def run(world, out, mangler, mode, **teacher):
    cfg = fast_config(**{"max_attempts": 2, **teacher})
    cfg.tasks = ["object", "location"]
    mangler.mode = mode
    return cfg, generate(cfg, world, out, mangler.base_url, progress=False, only_ids=few_images(world, cfg))


def test_a_trickling_body_hits_the_attempt_deadline(world, tmp_path, mangler):
    _, summary = run(world, tmp_path, mangler, "trickle", timeout_s=1.0, max_attempts=1)
    assert summary["failed"] == summary["requested"] > 0
    assert summary["attempt_errors"] == {"timeout": summary["requested"]}
    reasons = {r["reason"] for r in read_records(Path(summary["store"]))}
    assert all("no complete answer within 1 s" in r for r in reasons), reasons


def test_request_deadline_bounds_all_attempts(world, tmp_path, mangler):
    _, summary = run(world, tmp_path, mangler, "trickle", timeout_s=1.0, max_attempts=50, request_timeout_s=1.5)
    records = read_records(Path(summary["store"]))
    assert records and all(r["reason"].startswith("deadline: request_timeout_s=1.5") for r in records)
    assert all(r["attempts"] < 50 for r in records)


def test_missing_usage_is_estimated_counted_and_warned(world, tmp_path, mangler):
    price = ModelPrice(input_per_mtok=1000.0, output_per_mtok=1000.0)  # a few cents a request
    cfg, summary = run(world, tmp_path / "a", mangler, "no_usage")
    assert summary["ok"] == summary["requested"] > 0 and summary["usage_estimated_requests"] == summary["requested"]
    assert summary["usage"]["prompt_tokens"] > 0 and summary["usage"]["completion_tokens"] > 0
    assert summary["warnings"] and "counted locally" in summary["warnings"][0]
    # the estimate is spent against the budget: a small budget stops the run early
    cfg2 = fast_config(max_attempts=1, concurrency=1)
    cfg2.tasks = ["object", "location"]
    cfg2.prices["world-teacher"] = price
    cfg2.budget_usd = 6.0
    summary2 = generate(cfg2, world, tmp_path / "b", mangler.base_url, progress=False,
                        only_ids=few_images(world, cfg2, 6))
    assert summary2["budget_stopped"] and summary2["not_started"] > 0
    assert 0 < summary2["cost_usd_total"] <= 6.0


def test_negative_usage_is_an_error_and_never_lowers_the_cost(world, tmp_path, mangler):
    cfg, summary = run(world, tmp_path, mangler, "negative_usage")
    assert summary["failed"] == summary["requested"] > 0
    assert summary["failures_by_reason"] == {"bad_usage": summary["requested"]}
    assert summary["usage"]["prompt_tokens"] > 0 and summary["cost_usd_total"] >= 0
    record = read_records(Path(summary["store"]))[0]
    assert "usage.prompt_tokens is -1000, a negative count" in record["reason"]


@pytest.mark.parametrize("mode, reason", [
    ("html", "not_json: the reply is an HTML page"),
    ("no_choices", "no_choices: the reply has no choices (a JSON object with keys"),
    ("huge", "too_large: the answer is 2000000 characters, more than max_answer_chars=200000"),
])
def test_reasons_say_what_came_back(world, tmp_path, mangler, mode, reason):
    _, summary = run(world, tmp_path, mangler, mode, max_attempts=1)
    assert summary["failed"] == summary["requested"] > 0
    reasons = {r["reason"] for r in read_records(Path(summary["store"]))}
    assert all(reason in r for r in reasons), reasons


def test_derived_data_keeps_the_newest_successful_answer(world, tmp_path, mangler):
    cfg, summary = run(world, tmp_path, mangler, "pass")
    assert summary["ok"] == summary["requested"] > 0
    store_path = Path(summary["store"])
    before = read_jsonl(Path(derive_training_set(store_path, tmp_path / "before.jsonl", world)["path"]))
    ok = read_records(store_path)[0]
    store = Store(store_path)  # a later attempt at the same key that failed
    store.append({**ok, "status": "failed", "reason": "http_429: rate limited (after 2 attempts)", "items": []})
    store.close()
    after = read_jsonl(Path(derive_training_set(store_path, tmp_path / "after.jsonl", world)["path"]))
    assert after == before and len(before) > 0
