"""The world's held-out benchmark, written out in every public benchmark format, per language.

From world/bench/{lang}.jsonl (the same questions in every language) and scene_graphs.json:
- vqav2/{lang}_questions.json + {lang}_annotations.json: ten annotator answers per question, seeded:
  six give the gold word, two a surface variant of it ("Red", "two", "the ball", 예 for 네), two the
  same wrong answer of the question's type, so full and partial (0.6) credit both occur;
- gqa/{lang}_questions.json: keyed by question id, with imageId and GQA-style types;
- pope/{lang}.jsonl: "is there a <kind>?" for kinds present (yes) and absent (no), the absent kinds
  drawn three ways as POPE does: random, popular (most frequent in the train scenes), adversarial
  (most often seen together with the kinds present);
- mmbench/{lang}.tsv: four options (two for yes/no) per question, every rotation as its own row
  (index + k * 1e6), the image as base64 in the first row and referenced by index in the others;
- llava_bench/{lang}/: questions.jsonl (conv, detail, complex per eval scene), context.jsonl (the
  scene's caption) and answers_gpt4.jsonl (references written from the scene graph).
Images stay in the world's images/ folder. Everything is deterministic for a given world.
"""

from __future__ import annotations

import base64
import csv
import json
import random
from collections import Counter
from pathlib import Path

from xllava.eval.loaders import CIRCULAR_STRIDE
from xllava.world.captions import caption
from xllava.world.instructions import mood_turn, mvif_records
from xllava.world.korean import josa
from xllava.world.lexicon import (
    COLOURS,
    DIRECTIONS,
    EN_NUMBERS,
    KINDS,
    SHORT_ANSWER_INSTRUCTION,
    TIMES,
    WEATHERS,
    YES_NO,
    answer_word,
)
from xllava.world.scene import Scene

_VALUES = {"colour": list(COLOURS), "kind_at": list(KINDS), "relation": list(DIRECTIONS),
           "count": ["1", "2", "3", "4"], "exists": list(YES_NO)}
_ANSWER_TYPE = {"count": "number", "exists": "yes/no"}
_GQA_TYPES = {"colour": ("query", "attr"), "kind_at": ("query", "cat"), "relation": ("query", "rel"),
              "count": ("query", "obj"), "exists": ("verify", "obj"), "atmosphere": ("query", "global")}
_DETAIL_PROMPT = {"en": "Describe the image in detail.", "ko": "이미지를 자세히 설명해 주세요.",
                  "zh": "请详细描述这张图片。"}


def _rng(*parts: object) -> random.Random:
    return random.Random("/".join(["xllava-eval-formats", *map(str, parts)]))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def bare_question(row: dict) -> str:
    """The world question without its short-answer instruction line."""
    return row["text"].removesuffix("\n" + SHORT_ANSWER_INSTRUCTION[row["lang"]])


def answer_choices(row: dict) -> list[str]:
    """Every answer a question of this type can have, in the row's language."""
    if row["category"] == "atmosphere":
        values = list(TIMES) if row["query"].get("aspect") == "time" else list(WEATHERS)
    else:
        values = _VALUES[row["category"]]
    return [answer_word(v, row["lang"]) for v in values]


def _variant(gold: str, row: dict) -> str:
    """How a second annotator might write the same answer."""
    lang, category = row["lang"], row["category"]
    if lang == "ko":
        return {"네": "예", "아니요": "아니오"}.get(gold, gold + ".")
    if lang == "en":
        if category == "count" and gold.isdigit() and int(gold) < len(EN_NUMBERS):
            return EN_NUMBERS[int(gold)]
        if category == "kind_at":
            return f"the {gold}"
        return gold.capitalize()
    return gold + "。"


def vqa_answers(row: dict) -> list[str]:
    gold = row["answer"]
    rng = _rng("vqav2", row["question_id"])
    wrong = rng.choice([c for c in answer_choices(row) if c != gold])
    answers = [gold] * 6 + [_variant(gold, row), gold + ("." if row["lang"] != "zh" else "。"), wrong, wrong]
    rng.shuffle(answers)
    return answers


def write_vqav2(rows: list[dict], out: Path, lang: str) -> dict:
    questions, annotations = [], []
    for row in rows:
        questions.append({"image_id": row["scene_id"], "question": bare_question(row), "question_id": row["question_id"]})
        annotations.append({
            "question_id": row["question_id"], "image_id": row["scene_id"], "question_type": row["category"],
            "answer_type": _ANSWER_TYPE.get(row["category"], "other"), "multiple_choice_answer": row["answer"],
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                        for i, a in enumerate(vqa_answers(row))],
        })
    header = {"info": {"description": "xllava world, VQAv2 layout"}, "task_type": "Open-Ended",
              "data_type": "world", "data_subtype": "eval", "license": {"name": "generated"}}
    q_path, a_path = out / f"{lang}_questions.json", out / f"{lang}_annotations.json"
    _write_json(q_path, {**header, "questions": questions})
    _write_json(a_path, {**header, "annotations": annotations})
    return {"questions": str(q_path), "annotations": str(a_path)}


def write_gqa(rows: list[dict], out: Path, lang: str) -> dict:
    data = {}
    for row in rows:
        structural, semantic = _GQA_TYPES[row["category"]]
        data[row["question_id"]] = {
            "imageId": row["scene_id"], "question": bare_question(row),
            "answer": row["answer"].lower() if lang == "en" else row["answer"], "isBalanced": True,
            "types": {"structural": structural, "semantic": semantic, "detailed": row["category"]},
        }
    path = out / f"{lang}_questions.json"
    _write_json(path, data)
    return {"questions": str(path)}


# ---------------------------------------------------------------- POPE


def _pope_question(kind: str, lang: str) -> str:
    k = KINDS[kind]
    return {"en": f"Is there a {k.en} in the image?", "ko": f"이미지에 {josa(k.ko, '이')} 있나요?",
            "zh": f"图片中有{k.zh}吗？"}[lang]


def pope_plan(eval_scenes: list[Scene], train_scenes: list[Scene], per_image: int = 3) -> list[dict]:
    """Language-neutral POPE questions: (scene, kind, label, category), balanced yes/no per image."""
    frequency = Counter(k for s in train_scenes for k in {o.kind for o in s.objects})
    together: Counter[tuple[str, str]] = Counter()
    for s in train_scenes:
        kinds = sorted({o.kind for o in s.objects})
        together.update((a, b) for a in kinds for b in kinds if a != b)
    plan = []
    for scene in eval_scenes:
        present = sorted({o.kind for o in scene.objects})
        absent = [k for k in KINDS if k not in present]
        rng = _rng("pope", scene.scene_id)
        positives = rng.sample(present, min(per_image, len(present)))
        n = min(len(positives), len(absent))
        negatives = {
            "random": rng.sample(absent, n),
            "popular": sorted(absent, key=lambda k: (-frequency[k], k))[:n],
            "adversarial": sorted(absent, key=lambda k: (-sum(together[(p, k)] for p in present), k))[:n],
        }
        for category, chosen in negatives.items():
            for kind in positives[:n]:
                plan.append({"scene": scene, "kind": kind, "label": "yes", "category": category})
            for kind in chosen:
                plan.append({"scene": scene, "kind": kind, "label": "no", "category": category})
    return plan


def write_pope(plan: list[dict], out: Path, lang: str) -> dict:
    rows = [{"question_id": i, "image": f"{p['scene'].scene_id}.png", "text": _pope_question(p["kind"], lang),
             "label": p["label"], "category": p["category"]} for i, p in enumerate(plan)]
    path = out / f"{lang}.jsonl"
    _write_jsonl(path, rows)
    return {"questions": str(path)}


# ---------------------------------------------------------------- MMBench


def write_mmbench(rows: list[dict], out: Path, lang: str, world_dir: Path) -> dict:
    letters = "ABCD"
    table = []
    for base, row in enumerate(rows):
        gold = row["answer"]
        others = [c for c in answer_choices(row) if c != gold]
        rng = _rng("mmbench", row["question_id"].split("-", 1)[1])  # same options in every language
        options = [gold, *rng.sample(others, min(3, len(others)))]
        rng.shuffle(options)
        image = base64.b64encode((world_dir / row["image"]).read_bytes()).decode("ascii")
        for k in range(len(options)):
            rotated = options[k:] + options[:k]
            table.append({
                "index": base + k * CIRCULAR_STRIDE, "question": bare_question(row), "hint": "",
                **{letters[i]: (rotated[i] if i < len(rotated) else "") for i in range(4)},
                "answer": letters[rotated.index(gold)], "category": row["category"],
                "l2-category": "world", "split": "dev", "image": image if k == 0 else str(base),
            })
    path = out / f"{lang}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image"]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return {"tsv": str(path)}


# ---------------------------------------------------------------- LLaVA-Bench


def write_llava_bench(scenes: list[Scene], out: Path, languages: list[str]) -> dict[str, dict]:
    per_lang: dict[str, tuple[list, list, list]] = {lang: ([], [], []) for lang in languages}
    qid = 0
    for scene in scenes:
        image = f"{scene.scene_id}.png"
        conv = mvif_records(scene, "conversation", image, languages, _rng("llava-bench", scene.scene_id))
        for lang, record in zip(languages, conv, strict=True):
            questions, context, answers = per_lang[lang]
            context.append({"id": scene.scene_id, "image": image, "caption": caption(scene, lang, 0)})
            turn = record["conversations"]
            triples = [
                ("conv", turn[0]["value"].replace("<image>\n", ""), turn[1]["value"]),
                ("detail", _DETAIL_PROMPT[lang], caption(scene, lang, 2)),
                ("complex", *mood_turn(scene, lang)),
            ]
            for i, (category, question, reference) in enumerate(triples):
                questions.append({"question_id": qid + i, "image": image, "text": question, "category": category})
                answers.append({"question_id": qid + i, "text": reference, "answer_id": f"world-{qid + i}",
                                "model_id": "world-scene-graph", "metadata": {}})
        qid += 3
    files = {}
    for lang, (questions, context, answers) in per_lang.items():
        folder = out / lang
        _write_jsonl(folder / "questions.jsonl", questions)
        _write_jsonl(folder / "context.jsonl", context)
        _write_jsonl(folder / "answers_gpt4.jsonl", answers)
        files[lang] = {k: str(folder / f"{k}.jsonl") for k in ("questions", "context", "answers_gpt4")}
    return files


# ---------------------------------------------------------------- all of them


def write_world_benchmarks(world_dir: Path, out_dir: Path, languages: list[str]) -> dict:
    """Write every format for every language; returns {benchmark: {lang: {role: path}}, images: ...}."""
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    graphs = json.loads((world_dir / "scene_graphs.json").read_text(encoding="utf-8"))
    scenes = {g["scene_id"]: Scene.from_dict(g) for g in graphs}
    train = [s for s in scenes.values() if s.split == "train"]
    bench = {lang: _read_jsonl(world_dir / "bench" / f"{lang}.jsonl") for lang in languages}
    eval_ids = sorted({r["scene_id"] for rows in bench.values() for r in rows} |
                      {s.scene_id for s in scenes.values() if s.split == "eval"})
    eval_scenes = [scenes[i] for i in eval_ids]
    plan = pope_plan(eval_scenes, train)
    manifest: dict = {"images": str(world_dir / "images"), "short": {}, "vqav2": {}, "gqa": {}, "pope": {},
                      "mmbench": {}}
    for lang in languages:
        manifest["short"][lang] = {"questions": str(world_dir / "bench" / f"{lang}.jsonl"),
                                   "image_folder": str(world_dir)}
        manifest["vqav2"][lang] = write_vqav2(bench[lang], out_dir / "vqav2", lang)
        manifest["gqa"][lang] = write_gqa(bench[lang], out_dir / "gqa", lang)
        manifest["pope"][lang] = write_pope(plan, out_dir / "pope", lang)
        manifest["mmbench"][lang] = write_mmbench(bench[lang], out_dir / "mmbench", lang, world_dir)
    manifest["llava_bench"] = write_llava_bench(eval_scenes, out_dir / "llava_bench", languages)
    # the file names the paths relative to the world, so two builds of one world are byte-identical
    relative = json.dumps(manifest).replace(json.dumps(str(world_dir)), '"."').replace(str(world_dir) + "/", "")
    _write_json(out_dir / "manifest.json", json.loads(relative))
    return manifest
