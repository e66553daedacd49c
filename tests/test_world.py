"""Tests for xllava.world: Korean particles, determinism, held-out split, answer correctness and balance."""

from __future__ import annotations

import json
import random
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from xllava.world import build_world
from xllava.world.captions import N_VARIANTS, caption, object_first_caption
from xllava.world.config import WorldConfig
from xllava.world.korean import final_consonant, josa, particle
from xllava.world.lexicon import COLOURS, EN_NUMBERS, KINDS, POSITIONS, SIZES, TIMES, WEATHERS, answer_word
from xllava.world.questions import CATEGORIES, Question, answer_of, candidates
from xllava.world.render import render
from xllava.world.scene import Scene, direction, generate_scene

SMALL = WorldConfig(n_train_scenes=80, n_eval_scenes=40, eval_questions_per_type=12, train_questions_per_scene=4)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("world")
    return out, build_world(out, WorldConfig())


@pytest.fixture(scope="module")
def scenes(world: tuple[Path, dict]) -> dict[str, Scene]:
    out, _ = world
    graphs = json.loads((out / "scene_graphs.json").read_text(encoding="utf-8"))
    return {g["scene_id"]: Scene.from_dict(g) for g in graphs}


# ---------------------------------------------------------------- Korean particles


@pytest.mark.parametrize(
    ("word", "forms"),
    [
        ("공", ["을", "이", "은", "과", "으로", "이에요"]),  # final ㅇ
        ("상자", ["를", "가", "는", "와", "로", "예요"]),  # no final consonant
        ("별", ["을", "이", "은", "과", "로", "이에요"]),  # final ㄹ: 로, not 으로
        ("집", ["을", "이", "은", "과", "으로", "이에요"]),
        ("나무", ["를", "가", "는", "와", "로", "예요"]),
    ],
)
def test_particles(word: str, forms: list[str]) -> None:
    for given, expected in zip(["를", "가", "는", "와", "로", "예요"], forms, strict=True):
        assert particle(word, given) == expected, (word, given)
        assert particle(word, expected) == expected


def test_particles_digits_and_latin() -> None:
    assert josa("1", "로") == "1로"  # 일: ㄹ
    assert josa("2", "을") == "2를"  # 이
    assert josa("3", "로") == "3으로"  # 삼: ㅁ
    assert josa("6", "가") == "6이"  # 육
    assert josa("10", "를") == "10을"  # 십
    assert josa("100", "는") == "100은"  # 백
    assert josa("ball", "로") == "ball로"
    assert josa("cat", "가") == "cat이"
    assert josa("tree", "을") == "tree를"
    assert josa("큰 빨간 공", "이") == "큰 빨간 공이"
    assert final_consonant("상자.") == 0
    with pytest.raises(ValueError):
        particle("공", "의")


def test_chinese_measure_words() -> None:
    expected = {"ball": "个", "box": "个", "tree": "棵", "house": "座", "star": "颗", "kite": "只"}
    assert {k: v.zh_measure for k, v in KINDS.items()} == expected
    rng = random.Random(3)
    for _ in range(200):
        scene = generate_scene(rng, WorldConfig())
        text = caption(scene, "zh", 0)
        for o in scene.objects:
            k = KINDS[o.kind]
            assert f"一{k.zh_measure}{COLOURS[o.colour].zh}的{SIZES[o.size].zh}{k.zh}" in text


# ---------------------------------------------------------------- the built world


def test_determinism(tmp_path: Path) -> None:
    build_world(tmp_path / "a", SMALL)
    build_world(tmp_path / "b", SMALL)
    a_files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    b_files = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert a_files == b_files
    for rel in a_files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = build_world(tmp_path / "c", SMALL.model_copy(update={"seed": 1}))
    assert other["counts"]["train_scenes"] == SMALL.n_train_scenes
    assert (tmp_path / "c" / "captions.jsonl").read_bytes() != (tmp_path / "a" / "captions.jsonl").read_bytes()


def test_layout_and_counts(world: tuple[Path, dict], scenes: dict[str, Scene]) -> None:
    out, summary = world
    cfg = WorldConfig()
    assert len(list((out / "images").glob("*.png"))) == cfg.n_train_scenes + cfg.n_eval_scenes
    for lang in cfg.languages:
        rows = _jsonl(out / "bench" / f"{lang}.jsonl")
        assert Counter(r["category"] for r in rows) == dict.fromkeys(CATEGORIES, cfg.eval_questions_per_type)
    assert summary["counts"]["captions.jsonl"] == cfg.n_train_scenes * len(cfg.languages)
    n_instruct = summary["counts"]["instruct.jsonl"]
    # per scene and language: two mvif records, and its short answers in records of independent turns
    # (questions about the same kind go to different records)
    assert 3 * cfg.n_train_scenes * 3 <= n_instruct <= 8 * cfg.n_train_scenes * 3
    assert json.loads((out / "world.json").read_text(encoding="utf-8"))["counts"] == summary["counts"]
    image = render(next(iter(scenes.values())), cfg.image_size)
    assert image.size == (cfg.image_size, cfg.image_size) and image.mode == "RGB"


def test_eval_disjoint_from_train(scenes: dict[str, Scene]) -> None:
    train = [s for s in scenes.values() if s.split == "train"]
    evals = [s for s in scenes.values() if s.split == "eval"]
    assert train and evals
    assert not {s.signature() for s in train} & {s.signature() for s in evals}
    assert all(s.scene_id.startswith("w") for s in train) and all(s.scene_id.startswith("e") for s in evals)


def test_training_files_use_train_scenes_only(world: tuple[Path, dict]) -> None:
    out, _ = world
    for name in ("captions.jsonl", "instruct.jsonl"):
        assert all(r["image"].startswith("images/w") for r in _jsonl(out / name)), name
    for lang in WorldConfig().languages:
        assert all(r["image"].startswith("images/e") for r in _jsonl(out / "bench" / f"{lang}.jsonl"))


def test_bench_answers_match_scene_graph(world: tuple[Path, dict], scenes: dict[str, Scene]) -> None:
    out, _ = world
    by_suffix: dict[str, set[tuple]] = {}
    for lang in WorldConfig().languages:
        for r in _jsonl(out / "bench" / f"{lang}.jsonl"):
            scene = scenes[r["scene_id"]]
            assert r["image"] == f"images/{scene.scene_id}.png"
            assert (out / r["image"]).exists()
            q = Question(scene.scene_id, r["category"], "", r["query"])
            assert answer_word(answer_of(q, scene), lang) == r["answer"], r
            suffix = r["question_id"].split("-", 1)[1]
            by_suffix.setdefault(suffix, set()).add((r["scene_id"], json.dumps(r["query"], sort_keys=True)))
    assert all(len(v) == 1 for v in by_suffix.values())  # same question behind a suffix in every language


def test_answer_balance(world: tuple[Path, dict]) -> None:
    out, _ = world
    for lang in WorldConfig().languages:
        rows = _jsonl(out / "bench" / f"{lang}.jsonl")
        for category in CATEGORIES:
            answers = Counter(r["answer"] for r in rows if r["category"] == category)
            share = max(answers.values()) / sum(answers.values())
            if category == "exists":
                assert 0.4 <= share <= 0.6
            else:
                assert share < 0.5, (lang, category, answers)
    # the training short answers are balanced too
    turns = Counter()
    for r in _jsonl(out / "instruct.jsonl"):
        if r["task"] == "short_answer" and r["lang"] == "en":
            turns.update(c["value"] for c in r["conversations"] if c["from"] == "gpt")
    yes_no = turns["yes"] + turns["no"]
    assert 0.4 <= turns["yes"] / yes_no <= 0.6
    for digit in "123":
        assert turns[digit] > 0.5 * turns["1"]


def test_captions_mention_everything(world: tuple[Path, dict], scenes: dict[str, Scene]) -> None:
    out, _ = world
    for r in _jsonl(out / "captions.jsonl"):
        scene = scenes[r["id"].split("-")[0]]
        text, lang = r["conversations"][1]["value"], r["lang"]
        atm = scene.atmosphere
        if lang == "en":
            phrases = [f"{o.size} {o.colour} {o.kind}" for o in scene.objects]
            assert atm.weather in text.lower() and atm.time_of_day in text
        elif lang == "ko":
            phrases = [f"{SIZES[o.size].ko} {COLOURS[o.colour].ko_adj} {KINDS[o.kind].ko}" for o in scene.objects]
            assert WEATHERS[atm.weather].ko_adj in text and TIMES[atm.time_of_day].ko in text
        else:
            phrases = [f"{COLOURS[o.colour].zh}的{SIZES[o.size].zh}{KINDS[o.kind].zh}" for o in scene.objects]
            assert WEATHERS[atm.weather].zh_adj in text and TIMES[atm.time_of_day].zh_noun in text
        for phrase, n in Counter(phrases).items():
            assert text.count(phrase) >= n, (phrase, text)


def test_object_first_captions_name_the_kind_before_its_attributes() -> None:
    """Every attribute follows its object's kind word, and a relation's direction word follows both
    objects: the caption can only be predicted by looking objects up by kind."""
    rng = random.Random(3)
    seen_relation = False
    for i in range(40):
        scene = generate_scene(random.Random(i), WorldConfig())
        en = object_first_caption(scene, "en", rng)
        for o in scene.objects:
            if scene.unique_of_kind(o.kind):
                assert f"The {o.kind} is {o.size} and {o.colour}, {POSITIONS[o.row][o.col].en_phrase}." in en, en
            else:
                n = scene.count(o.kind)
                assert f"There are {EN_NUMBERS[n]} {KINDS[o.kind].en_plural}: " in en, en
                assert f"a {o.size} {o.colour} one {POSITIONS[o.row][o.col].en_phrase}" in en, en
        for a in scene.objects:
            for b in scene.objects:
                sentence = f"Seen from the {b.kind}, the {a.kind} is "
                if sentence in en:
                    seen_relation = True
                    rest = en.split(sentence, 1)[1]
                    assert rest.startswith({"left": "to the left", "right": "to the right", "above": "above",
                                            "below": "below"}[direction(a, b)]), en
        ko = object_first_caption(scene, "ko", rng)
        for o in scene.objects:
            if scene.unique_of_kind(o.kind):
                topic = josa(KINDS[o.kind].ko, "은")
                assert f"{topic} {POSITIONS[o.row][o.col].ko}에 있는 {SIZES[o.size].ko} {COLOURS[o.colour].ko_adj} {KINDS[o.kind].ko}" in ko, ko
        zh = object_first_caption(scene, "zh", rng)
        assert all(KINDS[o.kind].zh in zh for o in scene.objects)
    assert seen_relation


def test_caption_variants_are_distinct() -> None:
    scene = generate_scene(random.Random(0), WorldConfig())
    for lang in ("en", "ko", "zh"):
        assert len({caption(scene, lang, v) for v in range(N_VARIANTS)}) == N_VARIANTS


def test_visual_genome_files(world: tuple[Path, dict], scenes: dict[str, Scene]) -> None:
    out, _ = world
    objects = json.loads((out / "objects.json").read_text(encoding="utf-8"))
    rels = json.loads((out / "relationships.json").read_text(encoding="utf-8"))
    assert [o["image_id"] for o in objects] == list(scenes) == [r["image_id"] for r in rels]
    size = WorldConfig().image_size
    ids = set()
    for entry in objects:
        scene = scenes[entry["image_id"]]
        assert len(entry["objects"]) == len(scene.objects)
        for vg, obj in zip(entry["objects"], scene.objects, strict=True):
            assert vg["names"] == [obj.kind] and vg["attributes"] == [obj.colour, obj.size]
            assert 0 <= vg["x"] and vg["x"] + vg["w"] <= size and 0 <= vg["y"] and vg["y"] + vg["h"] <= size
            ids.add(vg["object_id"])
    assert len(ids) == sum(len(s.objects) for s in scenes.values())
    rel_ids = [r["relationship_id"] for entry in rels for r in entry["relationships"]]
    assert len(rel_ids) == len(set(rel_ids))
    for entry in rels:
        for r in entry["relationships"]:
            assert r["predicate"] in {"left of", "right of", "above", "below", "next to", "bigger than"}
            assert set(r["subject"]) == set(r["object"]) == {"object_id", "x", "y", "w", "h", "names", "attributes"}


def test_records_shape(world: tuple[Path, dict]) -> None:
    out, summary = world
    tasks = set()
    for name in ("captions.jsonl", "instruct.jsonl"):
        ids = set()
        for r in _jsonl(out / name):
            assert set(r) == {"id", "image", "conversations", "lang", "task", "source"}
            assert r["id"] not in ids
            ids.add(r["id"])
            tasks.add(r["task"])
            conv = r["conversations"]
            assert len(conv) % 2 == 0 and [c["from"] for c in conv] == ["human", "gpt"] * (len(conv) // 2)
            assert conv[0]["value"].startswith("<image>\n")
            assert sum(c["value"].count("<image>") for c in conv) == 1
            if r["task"] == "conversation":
                assert len(conv) == 16
            for c in conv:
                assert c["value"].strip() and c["value"] == unicodedata.normalize("NFC", c["value"])
    assert tasks == {"caption", "object", "location", "atmosphere", "conversation", "short_answer"}
    for lang in ("ko", "zh"):
        for r in _jsonl(out / "bench" / f"{lang}.jsonl"):
            assert r["text"] == unicodedata.normalize("NFC", r["text"]) and "\n" in r["text"]
            assert " " not in r["answer"]


def test_candidates_are_consistent() -> None:
    rng = random.Random(7)
    for _ in range(300):
        scene = generate_scene(rng, WorldConfig())
        for q in candidates(scene):
            assert answer_of(q, scene) == q.answer
        counts = Counter(o.kind for o in scene.objects)
        assert max(counts.values()) <= 3
        assert len({(o.row, o.col) for o in scene.objects}) == len(scene.objects)


@pytest.mark.parametrize("instruction", ["every_turn", "first_turn"])
def test_short_answer_packing(instruction: str) -> None:
    from xllava.world.instructions import short_answer_records
    from xllava.world.lexicon import SHORT_ANSWER_INSTRUCTION
    from xllava.world.questions import candidates

    rng = random.Random(3)
    scene = next(s for s in (generate_scene(rng, WorldConfig()) for _ in range(50)) if len(candidates(s)) >= 30)
    questions = candidates(scene)[:30]
    records = short_answer_records(scene, questions, "img.png", ["en", "ko"], random.Random(0), (8, 12), instruction)
    for lang in ("en", "ko"):
        mine = [r for r in records if r["lang"] == lang]
        turns = [len(r["conversations"]) // 2 for r in mine]
        assert sum(turns) == 30 and all(8 <= t <= 12 for t in turns)
        for r in mine:
            asked = [c["value"] for c in r["conversations"][0::2]]
            with_line = [SHORT_ANSWER_INSTRUCTION[lang] in q for q in asked]
            assert with_line == ([True] * len(asked) if instruction == "every_turn" else [True] + [False] * (len(asked) - 1))


def test_short_answer_image_after_the_question(tmp_path: Path) -> None:
    """short_answer_image_first=False writes "question\n<image>"; the training loader then renders the
    image after the question's text, and the other turns stay as they were."""
    from xllava.train.data import parse_record
    from xllava.world.instructions import short_answer_records
    from xllava.world.questions import candidates

    scene = generate_scene(random.Random(5), WorldConfig())
    questions = candidates(scene)[:6]
    before, after = (short_answer_records(scene, questions, "img.png", ["ko"], random.Random(0), (3, 3),
                                          "first_turn", image_first=first) for first in (True, False))
    (tmp_path / "img.png").write_bytes(b"")
    for a, b in zip(before, after, strict=True):
        assert b["conversations"][0]["value"] == a["conversations"][0]["value"].removeprefix("<image>\n") + "\n<image>"
        assert b["conversations"][1:] == a["conversations"][1:]
        sample = parse_record(b, tmp_path / "x.jsonl", 1, tmp_path)
        assert [p["type"] for p in sample.messages[0]["content"]] == ["text", "image"]
        assert "<image>" not in sample.messages[0]["content"][0]["text"]


def test_short_answer_turns_validated() -> None:
    with pytest.raises(ValueError, match="short_answer_turns"):
        WorldConfig(short_answer_turns=(5, 3))


def test_train_question_mix_shifts_the_types() -> None:
    from xllava.world.build import generate_scenes, instruct_records

    def english_questions(cfg: WorldConfig) -> Counter:
        train, _ = generate_scenes(cfg)
        asked = Counter()
        for r in instruct_records(train, cfg):
            if r["task"] == "short_answer" and r["lang"] == "en":
                for turn in r["conversations"][0::2]:
                    text = turn["value"]
                    asked["relation"] += "relative to" in text
                    asked["atmosphere"] += "time of day" in text or "weather" in text
                    asked["all"] += 1
        return asked

    even = english_questions(SMALL)
    mixed = english_questions(SMALL.model_copy(update={"train_question_mix": {"atmosphere": 0, "relation": 3}}))
    assert even["atmosphere"] > 0 and mixed["atmosphere"] == 0
    # 3 shares of 8 instead of 1 of 6 (less what a scene cannot ask twice)
    assert mixed["relation"] > 1.6 * even["relation"]


@pytest.mark.parametrize("mix", [{"colour": -1.0}, {"shape": 1.0}, dict.fromkeys(CATEGORIES, 0.0)])
def test_train_question_mix_validated(mix: dict) -> None:
    with pytest.raises(ValueError, match="train_question_mix"):
        WorldConfig(train_question_mix=mix)


def test_training_questions_spread_evenly_over_scenes() -> None:
    """Every scene gets about the same number of questions, so its conversations have about the
    same length (uniform draws left some scenes with 1 question and others with 14)."""
    from xllava.world.build import generate_scenes
    from xllava.world.questions import sample_balanced

    cfg = SMALL.model_copy(update={"n_train_scenes": 400})
    train, _ = generate_scenes(cfg)
    def per_scene(spread: bool) -> list[int]:
        drawn = sample_balanced(train, 9 * len(train) // len(CATEGORIES), random.Random(0), spread=spread)
        asked = Counter(q.scene_id for q in drawn)
        return sorted(asked[s.scene_id] for s in train)

    even, uniform = per_scene(True), per_scene(False)
    assert even[len(even) // 20] >= 7 and even[-len(even) // 20] <= 11, even
    assert uniform[len(uniform) // 20] < 7 and uniform[-len(uniform) // 20] > 11, uniform


def test_independent_turns_never_share_a_kind() -> None:
    from xllava.world.instructions import short_answer_records
    from xllava.world.lexicon import SHORT_ANSWER_INSTRUCTION
    from xllava.world.questions import candidates, kinds_involved, render_question

    rng = random.Random(5)
    scene = next(s for s in (generate_scene(rng, WorldConfig()) for _ in range(50)) if len(candidates(s)) >= 30)
    questions = candidates(scene)[:30]
    by_text = {render_question(q, scene, "en", instruction=False)[0]: q for q in questions}
    records = short_answer_records(scene, questions, "img.png", ["en"], random.Random(0), (1, 6),
                                   "first_turn", independent_turns=True)
    asked: list = []
    for r in records:
        lines = [[ln for ln in t["value"].split("\n") if ln not in ("<image>", SHORT_ANSWER_INSTRUCTION["en"])]
                 for t in r["conversations"][0::2]]
        turns = [by_text[ln[0]] for ln in lines]
        assert len(turns) <= 6
        kinds = [kinds_involved(q) for q in turns]
        assert all(not (a & b) for j, a in enumerate(kinds) for b in kinds[j + 1:]), r["conversations"]
        asked += turns
    assert sorted(map(id, asked)) == sorted(map(id, questions))


def test_short_answers_alone_are_the_same_records() -> None:
    """The world teacher rebuilds only the short answers (mvif=False); they must be exactly the ones
    the full build writes, or teacher data and the world's own data would ask different questions."""
    from xllava.world.build import generate_scenes, instruct_records

    train, _ = generate_scenes(SMALL)
    full = instruct_records(train, SMALL)
    alone = instruct_records(train, SMALL, mvif=False)
    assert alone and {r["task"] for r in full} - {"short_answer"}
    assert alone == [r for r in full if r["task"] == "short_answer"]
