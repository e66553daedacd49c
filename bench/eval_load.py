"""Loading a val2014-sized VQAv2 set: xllava's loader against the floor of reading the two JSON files.

A synthetic set shaped as the published val2014 files (214,354 questions with ten annotator answers
each, 40,504 image files named COCO_val2014_{id:012d}.jpg, empty) is written to a temporary folder.
Measured, best of --repeat:
  json.load:  parsing the question and annotation files, nothing else (the floor any loader pays);
  xllava:     xllava.eval.loaders.load_vqav2 (validation, image index, prompts, items).
Prints the seconds, questions per second and xllava / json.load.

    python bench/eval_load.py              # the full val2014 size
    python bench/eval_load.py --scale 0.1  # a tenth of it
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from xllava.eval.bench_files import clear_image_indexes
from xllava.eval.loaders import load_vqav2

QUESTIONS, IMAGES = 214_354, 40_504
WORDS = ["red", "blue", "two", "yes", "no", "dog", "cat", "table", "2", "3", "the man", "white", "tennis"]


def write_set(root: Path, n_questions: int, n_images: int, seed: int = 0) -> tuple[Path, Path, Path]:
    rng = random.Random(seed)
    images = root / "val2014"
    images.mkdir()
    ids = rng.sample(range(1, 600_000), n_images)
    for image_id in ids:
        (images / f"COCO_val2014_{image_id:012d}.jpg").touch()
    questions, annotations = [], []
    for qid in range(n_questions):
        image_id = ids[qid % n_images]
        questions.append({"image_id": image_id, "question": f"What color is the {rng.choice(WORDS)}?",
                          "question_id": image_id * 1000 + qid // n_images})
        answers = [{"answer": rng.choice(WORDS), "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)]
        annotations.append({"question_type": "what color is the", "multiple_choice_answer": answers[0]["answer"],
                            "answers": answers, "image_id": image_id, "answer_type": "other",
                            "question_id": questions[-1]["question_id"]})
    q_path, a_path = root / "v2_OpenEnded_mscoco_val2014_questions.json", root / "v2_mscoco_val2014_annotations.json"
    q_path.write_text(json.dumps({"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
                                  "license": {}, "data_subtype": "val2014", "questions": questions}))
    a_path.write_text(json.dumps({"info": {}, "license": {}, "data_subtype": "val2014", "annotations": annotations}))
    return q_path, a_path, images


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        clear_image_indexes()  # every run scans the image folder again
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the val2014 size")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    n_q, n_i = int(QUESTIONS * args.scale), max(1, int(IMAGES * args.scale))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        q_path, a_path, images = write_set(Path(tmp), n_q, n_i)
        print(f"wrote {n_q} questions, {n_i} image files in {time.perf_counter() - start:.1f} s")
        floor, _ = best(lambda: (json.loads(q_path.read_text()), json.loads(a_path.read_text())), args.repeat)
        ours, items = best(lambda: load_vqav2(q_path, a_path, images), args.repeat)
        assert len(items) == n_q
        print(f"json.load   {floor:6.2f} s  {n_q / floor:10,.0f} questions/s")
        print(f"xllava      {ours:6.2f} s  {n_q / ours:10,.0f} questions/s  (load time {ours:.2f} s for {n_q} "
              f"questions, {n_i} images)")
        print(f"xllava / json.load: {ours / floor:.2f}x the time")


if __name__ == "__main__":
    main()
