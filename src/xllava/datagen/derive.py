"""The training set derived from the store: LLaVA conversation JSONL with `lang`, `task`, `teacher`.

Each accepted item of the newest successful record of each key becomes one record per language (a
later failed attempt at a key does not take its answer away). The output is sorted
(image, task, key, item, language), so it does not depend on the order in which requests finished,
and a resumed run derives the same file as an uninterrupted one. Items that repeat an earlier item of
the same image (exactly or nearly) in another record are dropped here and counted.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from xllava.corpus.readers import nfc
from xllava.datagen.config import TASKS, QualityConfig
from xllava.datagen.quality import DuplicateGate, signature
from xllava.datagen.store import read_records


def _conversations(turns: list[dict], lang: str, image_first: bool = True) -> list[dict]:
    out = []
    for i, turn in enumerate(turns):
        question = turn["question"][lang]
        if i == 0:
            question = f"<image>\n{question}" if image_first else f"{question}\n<image>"
        out.append({"from": "human", "value": nfc(question)})
        out.append({"from": "gpt", "value": nfc(turn["answer"][lang])})
    return out


def newest_ok(records: list[dict]) -> dict[str, dict]:
    """The newest successful record of each key: a later failed or rejected attempt at a key (a retry
    that hit a rate limit, a stricter gate) never takes away an answer the store already holds."""
    out: dict[str, dict] = {}
    for record in records:
        if record["status"] == "ok":
            out[record["key"]] = record
    return out


def _order(record: dict) -> tuple:
    task = record["task"]
    return record["image_id"], TASKS.index(task) if task in TASKS else len(TASKS), task, record["key"]


def derive_training_set(store_path: Path, out_path: Path, image_root: Path,
                        quality: QualityConfig | None = None, relative_to: Path | None = None,
                        image_first: bool = True) -> dict:
    """Write the LLaVA JSONL; image paths are relative to `relative_to` (default: the output folder),
    so the training loader's default image root (the data file's folder) finds them. `image_first`:
    "<image>\nquestion" in each record's first turn, else "question\n<image>"."""
    quality = quality or QualityConfig()
    out_path = Path(out_path)
    base = Path(relative_to or out_path.parent).resolve()
    root = Path(image_root).resolve()
    records = sorted(newest_ok(read_records(store_path)).values(), key=_order)
    seen: dict[str, DuplicateGate] = {}  # image sha256 -> the items kept so far
    ids: set[str] = set()
    counts: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in records:
            image = os.path.relpath(root / record["image"], base)
            earlier = seen.setdefault(record["image_sha256"], DuplicateGate(quality.near_duplicate_jaccard))
            for i, item in enumerate(record["items"]):
                if item["rejected"]:
                    continue
                sig = signature(item)
                reason = earlier.reason(sig)
                if reason:
                    dropped[reason] += 1
                    continue
                earlier.keep(sig)
                for lang in record["languages"]:
                    rid = f"{record['image_id']}-{record['task']}{i}-{lang}"
                    if rid in ids:  # the same image and task from another model or prompt version
                        rid = f"{rid}-{record['key'][:8]}"
                    ids.add(rid)
                    f.write(json.dumps({
                        "id": rid,
                        "image": image,
                        "conversations": _conversations(item["turns"], lang, image_first),
                        "lang": lang,
                        "task": record["task"],
                        "source": "datagen",
                        "teacher": record["model"],
                        "prompt_version": record["prompt_version"],
                    }, ensure_ascii=False) + "\n")
                    counts[f"{record['task']}/{lang}"] += 1
    tmp.replace(out_path)  # readers never see a half-written training file
    return {"records": sum(counts.values()), "by_task_lang": dict(sorted(counts.items())),
            "dropped_cross_record": dict(dropped), "path": str(out_path)}
