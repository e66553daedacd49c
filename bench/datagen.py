"""mvif generator throughput against the world teacher with a fixed 200 ms latency per request.

sequential:  the generator with concurrency 1 (one request in flight, as a plain loop would do)
concurrent:  the generator with concurrency 16 (bounded async workers over one openai client)
Both talk HTTP to the same world teacher (loopback, a child process), each with a fresh store,
on different images, and are timed over their requests only (selection and set-up excluded).

    python bench/datagen.py                 # ratio, target >= 12x
    python bench/datagen.py --tiny          # also: the tiny recipe's world (1200 train scenes), no latency
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from xllava.datagen.config import DatagenConfig
from xllava.datagen.generate import generate
from xllava.datagen.openai_server import FaultConfig
from xllava.datagen.stage import run_datagen_stage
from xllava.world import build_world
from xllava.world.config import WorldConfig
from xllava.world.teacher import world_teacher_process


def _cfg(concurrency: int, limit: int, tasks: list[str]) -> DatagenConfig:
    return DatagenConfig.model_validate({
        "tasks": tasks, "selection": {"min_main_objects": 1, "limit": limit},
        "teacher": {"concurrency": concurrency, "model": "world-teacher"},
    })


def _ids(world: Path, start: int, count: int) -> set[str]:
    return {f"w{i:06d}" for i in range(start, start + count)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--sequential-requests", type=int, default=30)
    ap.add_argument("--concurrent-requests", type=int, default=320)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--tiny", action="store_true", help="also time the tiny recipe's world over loopback")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        n_images = args.sequential_requests + args.concurrent_requests
        world = tmp_path / "world"
        build_world(world, WorldConfig(n_train_scenes=n_images, n_eval_scenes=4, eval_questions_per_type=2))
        rates = {}
        with world_teacher_process(world, FaultConfig(latency_s=args.latency)) as server:
            for name, concurrency, start, count in [
                ("sequential", 1, 0, args.sequential_requests),
                ("concurrent", args.concurrency, args.sequential_requests, args.concurrent_requests),
            ]:
                cfg = _cfg(concurrency, count, ["object"])
                summary = generate(cfg, world, tmp_path / name, server.base_url,
                                   only_ids=_ids(world, start, count), progress=False)
                assert summary["ok"] == count, summary
                rates[name] = summary["requests_per_s"]
                print(f"{name:10s} concurrency {concurrency:2d}: {rates[name]:7.2f} requests/s "
                      f"({count} requests, {summary['request_seconds']:.1f} s, {args.latency * 1000:.0f} ms latency)")
        print(f"ratio concurrent/sequential: {rates['concurrent'] / rates['sequential']:.1f}x  (target >= 12x)")

        if args.tiny:
            tiny = tmp_path / "tiny"
            build_world(tiny, WorldConfig())  # the tiny recipe's world: 1200 train scenes
            for tasks in (["short_answer"], ["object", "location", "atmosphere", "conversation", "short_answer"]):
                cfg = DatagenConfig.model_validate({"tasks": tasks, "teacher": {"model": "world-teacher"},
                                                    "selection": {"min_main_objects": 1,
                                                                  "image_ids_file": "train_image_ids.txt"}})
                started = time.monotonic()
                with world_teacher_process(tiny) as server:
                    figures = run_datagen_stage(cfg, tiny, tmp_path / f"tiny-{len(tasks)}", server.base_url)
                gen = figures["generation"]
                print(f"tiny world, tasks {','.join(tasks)}: {gen['requested']} requests in "
                      f"{time.monotonic() - started:.1f} s (stage total; {gen['requests_per_s']:.0f} requests/s), "
                      f"{figures['training_set']['records']} training records")


if __name__ == "__main__":
    main()
