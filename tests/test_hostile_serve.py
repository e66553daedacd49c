"""Hostile but well-formed requests to a real server on loopback: each is refused (or cancelled)
before it costs much, with a 4xx that says why, and the server keeps answering.

Thin images (aspect ratio, processed size), formats outside the allow-list (EPS would reach
Ghostscript), text longer than any prompt under the token limit, absurd JSON, keys in the query
string (refused, and absent from uvicorn's access log), the demo page's
CSP, a full queue (503 + Retry-After) and a non-streaming client that hangs up.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.serve_util import data_url, http_json, model_dir_of, running_server, world_images

# the tiny model has 512 positions: the longest answer a short prompt leaves room for
LONG = 470
LIMITS = dict(max_tokens_limit=1024, max_prompt_tokens=300, max_aspect_ratio=20.0)


@pytest.fixture(scope="module")
def served(fast_run):
    with running_server(model_dir_of(fast_run), **LIMITS) as base:
        yield base


@pytest.fixture(scope="module")
def client(served) -> OpenAI:
    return OpenAI(base_url=served + "/v1", api_key="none", max_retries=0, timeout=60)


def ask(image_url: str | None, text: str) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": text}]
    if image_url:
        content.insert(0, {"type": "image_url", "image_url": {"url": image_url}})
    return [{"role": "user", "content": content}]


def assert_alive(client: OpenAI, fast_run: Path) -> None:
    r = client.chat.completions.create(model="m", messages=ask(data_url(world_images(fast_run)[0]), "What is here?"),
                                       max_tokens=3)
    assert r.choices[0].finish_reason in ("stop", "length")


def refused(client: OpenAI, messages: list[dict], **kw) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="m", messages=messages, max_tokens=2, **kw)
    return e.value


def test_thin_image_is_refused_by_aspect_ratio(client, fast_run):
    thin = Image.new("RGB", (1, 20000), "white")  # ~150 bytes, 20 k pixels: under every byte and pixel cap
    t0 = time.monotonic()
    err = refused(client, ask(data_url(thin), "hi"))
    assert err.status_code == 413 and "aspect ratio" in err.message and "1x20000" in err.message
    assert time.monotonic() - t0 < 30  # what it guards: processing it took seconds and gigabytes
    assert_alive(client, fast_run)


def test_processed_size_is_checked_before_the_processor(fast_run):
    """An image within the aspect limit that the processor would scale up past max_processed_pixels."""
    model_dir = model_dir_of(fast_run)
    edge = json.loads((model_dir / "processor_config.json").read_text())["image_processor"]["size"]["shortest_edge"]
    limit = edge * edge * 10  # a 15:1 image becomes edge x 15*edge: over; a 5:1 one edge x 5*edge: under
    with running_server(model_dir, max_processed_pixels=limit) as base:
        c = OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=60)
        err = refused(c, ask(data_url(Image.new("RGB", (150, 10), "red")), "hi"))
        assert err.status_code == 413 and "processor would resize it" in err.message
        assert f"{15 * edge}x{edge}" in err.message
        ok = c.chat.completions.create(model="m", messages=ask(data_url(Image.new("RGB", (50, 10), "red")), "hi"),
                                       max_tokens=2)
        assert ok.choices[0].finish_reason in ("stop", "length")


def eps_bytes() -> bytes:
    return (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
            b"(/etc/passwd) (r) file pop\nshowpage\n%%EOF\n")


def test_format_allow_list(client, fast_run):
    url = "data:image/eps;base64," + base64.b64encode(eps_bytes()).decode()
    err = refused(client, ask(url, "hi"))
    assert err.status_code == 400 and "not a PNG, JPEG, WebP, GIF, BMP or TIFF" in err.message
    assert "/tmp" not in err.message and "gs " not in err.message
    # every allowed format is read (a GIF as its first frame)
    base = Image.open(world_images(fast_run)[0]).convert("RGB")
    for fmt in ("JPEG", "WEBP", "GIF", "BMP", "TIFF"):
        r = client.chat.completions.create(model="m", messages=ask(data_url(base, fmt), "What is here?"), max_tokens=2)
        assert r.choices[0].finish_reason in ("stop", "length"), fmt


def test_decoder_errors_carry_no_paths(client):
    good = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(good, "PNG")
    truncated = good.getvalue()[:60]
    err = refused(client, ask("data:image/png;base64," + base64.b64encode(truncated).decode(), "hi"))
    assert err.status_code == 400 and "could not decode image" in err.message
    assert not re.search(r"/\w+/", err.message)


def test_text_over_the_character_bound_is_refused_before_tokenising(client, served, fast_run):
    text = "a" * 3_000_000  # 3 MB without an image: refused from the body's size, before parsing
    t0 = time.monotonic()
    err = refused(client, ask(None, text))
    assert err.status_code == 400 and err.code == "context_length_exceeded" and "without an image" in err.message
    # with an image the body may be large: the text is refused by its characters, before tokenising
    image = data_url(world_images(fast_run)[0])
    err = refused(client, ask(image, text))
    assert err.status_code == 400 and err.code == "context_length_exceeded" and "characters" in err.message
    assert time.monotonic() - t0 < 30  # what it guards: tokenising 40 MB took 94 s
    # a text under the character bound but over the token limit still gets the token-count refusal
    err = refused(client, ask(None, "안녕 " * 400))
    assert err.status_code == 400 and "tokens" in err.message
    assert_alive(client, fast_run)


def post(base: str, body: bytes, path: str = "/v1/chat/completions") -> tuple[int, dict]:
    return http_json("POST", base + path, body, {"Content-Type": "application/json"})


def test_absurd_json_is_400_not_500(served, client, fast_run):
    msgs = ask(None, "hi")
    status, body = post(served, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "nests too deeply" in body["error"]["message"]
    status, body = post(served, b'{"messages": ' + json.dumps(msgs).encode() + b', "max_tokens": ' + b"9" * 5000 + b"}")
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = post(served, json.dumps({"messages": msgs, "max_tokens": int("9" * 4000)}).encode())
    assert status == 400 and body["error"]["param"] == "max_tokens"
    status, body = post(served, json.dumps({"messages": msgs, "temperature": 1e400}).encode().replace(b"Infinity", b"1e400"))
    assert status == 400
    nested = {"messages": msgs, "tools": [json.loads("[" * 900 + "]" * 900)]}
    status, body = post(served, json.dumps(nested).encode())
    assert status == 400
    # a million tiny objects within the byte limit: refused before they are built
    many = {"messages": ask(data_url(world_images(fast_run)[0]), "hi"), "user": [{}] * 1_000_000}
    status, body = post(served, json.dumps(many).encode())
    assert status == 400 and "JSON objects and arrays" in body["error"]["message"]
    assert_alive(client, fast_run)


def test_response_format_json_is_refused(client):
    err = refused(client, ask(None, "hi"), response_format={"type": "json_object"})
    assert err.status_code == 400 and err.body["param"] == "response_format"
    ok = client.chat.completions.create(model="m", messages=ask(None, "hi"), max_tokens=2,
                                        response_format={"type": "text"})
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_demo_page_csp_allows_only_its_own_inline_code(served):
    with urllib.request.urlopen(served + "/") as r:
        page, headers = r.read().decode(), r.headers
    assert headers["X-Frame-Options"] == "DENY"
    csp = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    assert csp["frame-ancestors"] == "'none'" and "unsafe-inline" not in headers["Content-Security-Policy"]
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        content = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(content.encode()).digest()).decode()
        assert csp[directive] == f"'sha256-{digest}'"


def test_query_string_key_is_refused_and_not_logged(fast_run):
    """A server with uvicorn's access log on: the secret never reaches a log record."""
    secret = "sk-secret-in-the-url-123"
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    with running_server(model_dir_of(fast_run), log_level="info", api_key="sk-real") as base:
        collect = Collect()
        logging.getLogger("uvicorn.access").addHandler(collect)
        try:
            status, body = http_json("GET", f"{base}/v1/models?api_key={secret}")
            assert status == 400 and body["error"]["code"] == "key_in_query" and secret not in json.dumps(body)
            status, _ = http_json("GET", f"{base}/health?token={secret}")
            assert status == 200
            status, _ = http_json("GET", f"{base}/v1/models", headers={"Authorization": "Bearer sk-real"})
            assert status == 200
        finally:
            logging.getLogger("uvicorn.access").removeHandler(collect)
    assert any("/v1/models" in line for line in lines), lines  # the access log was on
    assert not any(secret in line for line in lines), lines


# ------------------------------------------------------------------ the queue and hang-ups


@pytest.fixture(scope="module")
def narrow(fast_run):
    """One row at a time and one waiting request: a second long request fills the queue."""
    with running_server(model_dir_of(fast_run), max_batch_size=1, max_queue=1, retry_after_s=3,
                        **LIMITS) as base:
        yield base


def health(base: str) -> dict:
    return http_json("GET", base + "/health")[1]


def long_request(stream: bool) -> bytes:
    return json.dumps({"messages": ask(None, "count"), "max_tokens": LONG, "ignore_eos": True,
                       "stream": stream}).encode()


def open_request(base: str, body: bytes) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=60)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    return conn


def wait_for(base: str, cond, what: str, limit: float = 60) -> dict:
    deadline = time.monotonic() + limit
    while not cond(h := health(base)):
        assert time.monotonic() < deadline, f"{what}: {h}"
        time.sleep(0.02)
    return h


def test_full_queue_is_503_with_retry_after(narrow):
    first = open_request(narrow, long_request(stream=True))
    wait_for(narrow, lambda h: h["active"] == 1, "first request running")
    second = open_request(narrow, long_request(stream=True))
    wait_for(narrow, lambda h: h["queued"] == 1, "second request queued")
    req = urllib.request.Request(narrow + "/v1/chat/completions", data=long_request(stream=False),
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 503 and e.value.headers["Retry-After"] == "3"
    assert json.load(e.value)["error"]["code"] == "server_busy"
    first.close()
    second.close()
    wait_for(narrow, lambda h: h["active"] == 0 and h["queued"] == 0, "both hung-up streams cancelled")


def test_non_streaming_hang_up_frees_its_row(narrow):
    before = health(narrow)["generated_tokens"]
    conn = open_request(narrow, long_request(stream=False))
    wait_for(narrow, lambda h: h["active"] == 1, "request running")
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    h = wait_for(narrow, lambda h: h["active"] == 0, "row freed after the hang-up")
    assert h["generated_tokens"] - before < LONG  # cancelled, not generated to its max_tokens
    # the server answers the next request in full
    status, body = post(narrow, json.dumps({"messages": ask(None, "hi"), "max_tokens": 5, "ignore_eos": True}).encode())
    assert status == 200 and body["usage"]["completion_tokens"] == 5


def test_concurrent_flood_gets_answers_or_503(narrow):
    """Thirty clients at once on a one-slot queue: each gets an answer or a 503 with Retry-After."""
    results: list[tuple[int, str | None]] = []

    def one() -> None:
        req = urllib.request.Request(narrow + "/v1/chat/completions", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"messages": ask(None, "hi"), "max_tokens": 3}).encode())
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                results.append((r.status, None))
        except urllib.error.HTTPError as e:
            results.append((e.code, e.headers["Retry-After"]))

    threads = [threading.Thread(target=one) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 30
    assert all(code == 200 or (code == 503 and retry == "3") for code, retry in results), results
    assert any(code == 200 for code, _ in results)
