"""The generator's parts on their own: selection, schema, quality gates, pacing, store, derive."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from tests.datagen_util import build_small_world
from xllava.datagen.config import QualityConfig, SelectionConfig
from xllava.datagen.derive import derive_training_set
from xllava.datagen.prompts import user_text
from xllava.datagen.quality import check_item, gate_items, script_ratio
from xllava.datagen.ratelimit import RateLimiter, backoff_delay, parse_retry_after
from xllava.datagen.schema import InvalidAnswer, parse_answer, response_format
from xllava.datagen.selection import AnnotationError, select_images
from xllava.datagen.store import Store, StoreError, public_endpoint, read_records, request_key


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_small_world(tmp_path_factory.mktemp("dg-world"))


def _item(turns: list[tuple[dict, dict]]) -> dict:
    return {"turns": [{"question": q, "answer": a} for q, a in turns]}


GOOD = ({"en": "What colour is the ball?", "ko": "공은 무슨 색인가요?", "zh": "球是什么颜色的？"},
        {"en": "It is red.", "ko": "빨간색이에요.", "zh": "是红色的。"})


# ---------------------------------------------------------------- selection


def test_selection_counts_main_objects_shards_and_limit(world):
    graphs = json.loads((world / "scene_graphs.json").read_text())
    n_objects = {g["scene_id"]: len(g["objects"]) for g in graphs}
    sel = select_images(world, SelectionConfig(min_main_objects=3, max_main_objects=4))
    assert {im.image_id for im in sel.images} == {s for s, n in n_objects.items() if 3 <= n <= 4}
    assert sel.counts["too_few_objects"] == sum(n < 3 for n in n_objects.values())
    assert sel.counts["too_many_objects"] == sum(n > 4 for n in n_objects.values())
    first = sel.images[0]
    assert first.path.is_file() and first.rel_path.startswith("images/")
    assert all(o.label.startswith(o.name) for o in first.objects)  # "ball (red, big)"
    shards = [select_images(world, SelectionConfig(min_main_objects=1, num_shards=3, shard=i)) for i in range(3)]
    ids = [{im.image_id for im in s.images} for s in shards]
    assert set.union(*ids) == set(n_objects) and sum(map(len, ids)) == len(n_objects)
    limited = select_images(world, SelectionConfig(min_main_objects=1, limit=5), only_ids={g for g in n_objects
                                                                                           if g.startswith("w")})
    assert len(limited.images) == 5 and all(im.image_id.startswith("w") for im in limited.images)


def test_selection_errors_name_file_entry_and_field(tmp_path):
    (tmp_path / "objects.json").write_text(json.dumps([
        {"image_id": 1, "objects": [{"x": 0, "y": 0, "w": 5, "h": 5, "names": ["cat"]}]},
        {"image_id": 2, "objects": [{"x": 0, "y": 0, "w": 5, "h": 5}]},
    ]))
    from PIL import Image

    for i in (1, 2):
        Image.new("RGB", (10, 10)).save(tmp_path / f"{i}.jpg")
    with pytest.raises(AnnotationError, match=r"objects\.json: entry 1: field 'objects\[0\]\.names'"):
        select_images(tmp_path, SelectionConfig(min_main_objects=1))


# ---------------------------------------------------------------- schema and prompts


def test_schema_is_strict_and_parse_names_the_problem():
    rf = response_format("location", ["en", "ko"], "v1")
    schema = rf["json_schema"]["schema"]
    assert rf["json_schema"]["strict"] and schema["required"] == ["scene_graph", "conversations"]
    assert schema["$defs"]["Text"]["additionalProperties"] is False
    answer = {"conversations": [_item([GOOD])]}
    fenced = "```json\n" + json.dumps(answer, ensure_ascii=False) + "\n```"
    assert parse_answer(fenced, "object", ["en", "ko", "zh"]) == answer
    with pytest.raises(InvalidAnswer, match="invalid_json"):
        parse_answer('{"conversations": [', "object", ["en"])
    with pytest.raises(InvalidAnswer, match=r"schema: conversations\.0\.turns\.0\.question\.zh"):
        parse_answer(json.dumps({"conversations": [_item([({"en": "a", "ko": "b"}, GOOD[1])])]}), "object",
                     ["en", "ko", "zh"])


def test_prompt_has_machine_readable_lines_objects_and_seeds(world):
    image = select_images(world, SelectionConfig(min_main_objects=1, limit=1)).images[0]
    text = user_text(image, "location", ["en", "ko"], "v1")
    assert "Task type: location-centric (id: location)" in text
    assert "Target languages: en (English), ko (Korean)" in text
    assert image.objects[0].label in text and "Annotated relations:" in text
    assert "猫" not in text  # seeds show only the requested languages
    with pytest.raises(KeyError, match="unknown prompt version"):
        user_text(image, "object", ["en"], "v0")


# ---------------------------------------------------------------- quality gates


def test_quality_gates_reject_with_reasons():
    cfg = QualityConfig()
    assert check_item(_item([GOOD]), "object", cfg) is None
    english_ko = ({**GOOD[0], "ko": "What colour is the ball?"}, GOOD[1])
    assert check_item(_item([english_ko]), "object", cfg) == "wrong_language:ko"
    assert check_item(_item([(GOOD[0], {**GOOD[1], "zh": "빨간색이에요."})]), "object", cfg) == "wrong_language:zh"
    leak = (GOOD[0], {**GOOD[1], "en": "The bounding box shows a red ball."})
    assert check_item(_item([leak]), "object", cfg) == "mentions_annotations"
    refusal = (GOOD[0], {**GOOD[1], "en": "I'm sorry, I cannot see the image."})
    assert check_item(_item([refusal]), "object", cfg) == "refusal"
    assert check_item(_item([(GOOD[0], {**GOOD[1], "ko": " "})]), "object", cfg) == "empty_answer:ko"
    assert check_item(_item([GOOD] * 3), "conversation", cfg) == "turn_count:3"
    assert check_item(_item([GOOD, GOOD]), "object", cfg) == "duplicate_turn"
    assert script_ratio("3", "ko") is None and script_ratio("빨간 ball", "ko") < 0.6
    near = ({**GOOD[0], "en": "What color is the ball?"}, GOOD[1])  # Jaccard 0.91
    items = gate_items({"conversations": [_item([GOOD]), _item([GOOD]), _item([near])]}, "object", cfg)
    assert [i["rejected"] for i in items] == [None, "duplicate", "near_duplicate"]


# ---------------------------------------------------------------- pacing


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_rate_limiter_windows_and_cooldown():
    async def run() -> list[float]:
        clock = FakeClock()
        limiter = RateLimiter(rpm=2, tpm=100, clock=clock, sleep=clock.sleep)
        starts = []
        for tokens in (10, 10, 10):  # the third request waits for the first to leave the window
            starts.append((await limiter.acquire(tokens))[0])
        big = await limiter.acquire(95)  # tokens: waits until the window has room for 95
        starts.append(big[0])
        limiter.pause_for(30)
        starts.append((await limiter.acquire(0))[0])
        tokens_only = RateLimiter(tpm=100, clock=clock, sleep=clock.sleep)
        reserved = await tokens_only.acquire(95)
        tokens_only.settle(reserved, 5)  # the response's usage was far below the reservation
        starts.append((await tokens_only.acquire(80))[0])  # fits at once: 5 + 80 <= 100
        starts.append(reserved[0])
        return starts

    starts = asyncio.run(run())
    assert starts[:3] == [0.0, 0.0, 60.0]
    assert starts[3] == 120.0  # 60 + 60: both earlier windows had to expire for 95 more tokens
    assert starts[4] >= 150.0  # the cool-down after a 429 holds every worker
    assert starts[5] == starts[6]  # settled usage frees the window at once


def test_retry_after_parsing_and_backoff_honours_it():
    assert parse_retry_after({"Retry-After-Ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None
    rng = random.Random(0)
    delays = [backoff_delay(a, 1.0, 8.0, None, rng) for a in range(1, 7)]
    assert all(0.5 * min(8, 2 ** (a - 1)) <= d <= min(8, 2 ** (a - 1)) for a, d in zip(range(1, 7), delays, strict=True))
    assert all(backoff_delay(1, 0.01, 1.0, 5.0, rng) >= 5.0 for _ in range(50))


# ---------------------------------------------------------------- store


def test_request_key_covers_every_part():
    base = dict(image_sha256="a" * 64, task="object", languages=["en", "ko"], prompt_version="v1",
                model="gpt-4o", endpoint="https://api.openai.com/v1", params={"temperature": 0.2})
    key = request_key(**base)
    for field, value in [("image_sha256", "b" * 64), ("task", "location"), ("languages", ["ko", "en"]),
                         ("prompt_version", "v2"), ("model", "gpt-4o-mini"), ("endpoint", "http://x/v1"),
                         ("params", {"temperature": 0.7})]:
        assert request_key(**{**base, field: value}) != key, field
    assert public_endpoint("https://user:sk-secret@host:8443/v1/?api-key=sk-secret") == "https://host:8443/v1"


def _record(key: str, status: str = "ok") -> dict:
    return {"key": key, "status": status, "reason": None}


def test_store_repairs_a_torn_tail_and_refuses_damage_or_a_second_writer(tmp_path):
    path = tmp_path / "store.jsonl"
    with Store(path) as store:
        store.append(_record("k1"))
        store.append(_record("k2", "failed"))
    with path.open("ab") as f:
        f.write(b'{"key": "k3", "sta')  # a write cut short by kill -9
    assert [r["key"] for r in read_records(path)] == ["k1", "k2"]
    with Store(path) as store:
        assert store.repaired.startswith("dropped a torn last line")
        assert set(store.records) == {"k1", "k2"}
        store.append(_record("k3"))
        with pytest.raises(StoreError, match="in use by another generator"):
            Store(path)
    assert [r["key"] for r in read_records(path)] == ["k1", "k2", "k3"]
    with path.open("ab") as f:
        f.write(json.dumps(_record("k4")).encode())  # whole record, newline lost
    with Store(path) as store:
        assert store.repaired == "completed the last line" and "k4" in store.records
    lines = path.read_bytes().split(b"\n")
    lines[1] = b'{"key": "k2", "sta'
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError, match=r"store\.jsonl: line 2: not a JSON record"):
        read_records(path)


def test_derive_is_independent_of_completion_order(tmp_path, world):
    turns = _item([GOOD])["turns"]
    records = [
        {"key": f"k{i}", "status": "ok", "image_id": f"w00000{i % 3}", "image": f"images/w00000{i % 3}.png",
         "image_sha256": str(i % 3), "task": task, "languages": ["en", "ko", "zh"], "prompt_version": "v1",
         "model": "m", "items": [{"turns": [{"question": {k: v + f" {i}" for k, v in GOOD[0].items()},
                                             "answer": GOOD[1]}], "rejected": None},
                                 {"turns": turns, "rejected": "refusal"}]}
        for i, task in enumerate(["object", "location", "atmosphere", "object", "short_answer", "conversation"])
    ]
    outputs = []
    for seed in (0, 1):
        random.Random(seed).shuffle(records)
        (tmp_path / "store.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        result = derive_training_set(tmp_path / "store.jsonl", tmp_path / "out" / "mvif.jsonl", world)
        outputs.append((tmp_path / "out" / "mvif.jsonl").read_text())
    assert outputs[0] == outputs[1] and result["records"] == 6 * 3
    first = json.loads(outputs[0].splitlines()[0])
    assert first["conversations"][0]["value"].startswith("<image>\n")
    assert (tmp_path / "out" / first["image"]).resolve() == (world / "images" / "w000000.png").resolve()
    assert {"id", "image", "conversations", "lang", "task", "teacher"} <= set(first)
    # image after the question: the same records, the placeholder moved to the end of the first turn
    derive_training_set(tmp_path / "store.jsonl", tmp_path / "last" / "mvif.jsonl", world, image_first=False)
    last = json.loads((tmp_path / "last" / "mvif.jsonl").read_text().splitlines()[0])
    question = first["conversations"][0]["value"].removeprefix("<image>\n")
    assert last["conversations"][0]["value"] == question + "\n<image>"
    assert last["conversations"][1:] == first["conversations"][1:]


def test_images_go_as_data_urls_resized_only_above_the_caps(tmp_path, world):
    import base64
    import io

    from PIL import Image

    from xllava.datagen.client import image_data_url

    small = world / "images" / "w000000.png"
    url, size = image_data_url(small, 1024, 4_000_000)
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == small.read_bytes()
    big = tmp_path / "big.png"
    Image.effect_noise((3000, 2000), 64).convert("RGB").save(big)
    url, size = image_data_url(big, 1024, 300_000)
    data = base64.b64decode(url.split(",", 1)[1])
    assert url.startswith("data:image/jpeg;base64,") and size == (1024, 683) and len(data) <= 300_000
    assert Image.open(io.BytesIO(data)).size == (1024, 683)
