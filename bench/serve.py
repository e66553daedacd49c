"""Serving throughput: 8 concurrent clients against one client at a time, on the same server.

Both modes send the same kind of request through the official `openai` client to one
`xllava serve` process: an image (data URL) and a question, greedy, `max_tokens` tokens each
(`ignore_eos`, vLLM's extension, so every answer has the same length and tokens/s compare).
Each client is its own process, as real clients are (threads would queue on one GIL).
Rounds alternate the two modes, so a change in the load of the (shared) machine falls on both.
The server batches concurrent requests; the ratio of total generated tokens/s is the figure.

    python bench/serve.py                         # builds the fast tiny model once (~30 s)
    python bench/serve.py --model-dir runs/tiny/instruct/model --max-tokens 64
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
# the fast variant of the tiny recipe (as tests/conftest.py): a model in about 30 s on 2 cores. Its
# stage 2 reads what datagen writes (datagen/instruct.jsonl), so datagen runs too, short answers only
FAST = [
    "world.n_train_scenes=40", "world.n_eval_scenes=8", "world.eval_questions_per_type=4", "tower.epochs=1",
    "tower.extra_scenes=0", "datagen.tasks=[short_answer]", "align.max_steps=4", "align.batch_size=8",
    "instruct.max_steps=4", "instruct.batch_size=8", "stages=[world, datagen, tower, align, instruct]",
]


def build_model(work: Path) -> Path:
    from xllava.config import load_recipe
    from xllava.pipeline import Pipeline

    recipe = load_recipe(ROOT / "recipes" / "tiny.yaml", [*FAST, f"output_dir={work}"])
    pipeline = Pipeline(recipe, log=lambda _: None)
    pipeline.run()
    return pipeline.trained_model_dir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xllava.cli", "serve", str(model_dir), "--port", str(port),
         "--log-level", "warning", "-s", "max_batch_size=16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not come up in 120 s")


def images_of(model_dir: Path, world: Path | None) -> list[str]:
    folder = world / "images" if world else None
    if folder is None or not folder.is_dir():  # a model dir from a run: <run>/instruct/model
        folder = model_dir.parents[1] / "world" / "images"
    files = sorted(folder.glob("*.png"))[:16]
    if not files:
        raise SystemExit(f"no images under {folder}; pass --world")
    return ["data:image/png;base64," + base64.b64encode(f.read_bytes()).decode() for f in files]


# ---------------------------------------------------------------- one client process

_client = None


def _init_client(base_url: str) -> None:
    global _client
    from openai import OpenAI

    _client = OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=300)


def client_loop(images: list[str], n: int, offset: int, max_tokens: int) -> int:
    """n requests one after the other; the tokens generated."""
    tokens = 0
    for i in range(n):
        r = _client.chat.completions.create(
            model="xllava",
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": images[(offset + i) % len(images)]}},
                {"type": "text", "text": "Describe the picture."}]}],
            max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True},
        )
        tokens += r.usage.completion_tokens
    return tokens


# ---------------------------------------------------------------- the measurement


def health(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=5) as r:
        return json.load(r)


def phase(pool: ProcessPoolExecutor, base_url: str, images: list[str], clients: int, per_client: int,
          max_tokens: int) -> tuple[float, int, float]:
    """`clients` clients at once, each sending per_client requests: tokens/s, tokens, mean batch size."""
    before = health(base_url)
    start = time.perf_counter()
    futures = [pool.submit(client_loop, images, per_client, 7 * c, max_tokens) for c in range(clients)]
    tokens = sum(f.result() for f in futures)
    elapsed = time.perf_counter() - start
    after = health(base_url)
    d = {k: after[k] - before[k] for k in ("prefills", "prefill_seconds", "steps", "step_seconds", "rows_stepped")}
    print(f"  server: {d['prefills']} prefills ({1000 * d['prefill_seconds'] / max(1, d['prefills']):.1f} ms each) "
          f"for {clients * per_client} requests, {d['steps']} decode steps "
          f"({1000 * d['step_seconds'] / max(1, d['steps']):.1f} ms each), engine busy "
          f"{d['prefill_seconds'] + d['step_seconds']:.2f} of {elapsed:.2f} s", flush=True)
    return tokens / elapsed, tokens, d["rows_stepped"] / max(1, d["steps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, help="an X-LLaVA directory (default: build the fast tiny model)")
    ap.add_argument("--world", type=Path, help="folder with images/ (default: the model's run)")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-serve"), help="where the fast model is built")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--requests", type=int, default=32, help="requests per round of one client")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the two modes")
    args = ap.parse_args()

    model_dir = args.model_dir or build_model(args.work)
    images = images_of(model_dir, args.world)
    port = free_port()
    server = start_server(model_dir, port)
    base_url = f"http://127.0.0.1:{port}/v1"
    modes = ((1, args.requests), (args.clients, 2 * max(1, args.requests // args.clients)))
    totals = {clients: [0.0, 0, 0.0] for clients, _ in modes}  # seconds, tokens, mean batch
    ctx = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(args.clients, mp_context=ctx, initializer=_init_client, initargs=(base_url,)) as pool:
            # warm-up: every client process started and connected, the server's first calls done
            list(pool.map(client_loop, [images] * args.clients, [1] * args.clients, range(args.clients),
                          [2] * args.clients))
            for r in range(args.rounds):
                for clients, per_client in modes:
                    rate, tokens, batch = phase(pool, base_url, images, clients, per_client, args.max_tokens)
                    totals[clients][0] += tokens / rate
                    totals[clients][1] += tokens
                    totals[clients][2] += batch / args.rounds
                    print(f"round {r + 1}: {clients} client(s): {rate:8.1f} tokens/s, mean batch {batch:.1f}",
                          flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    (t1, n1, b1), (t8, n8, b8) = totals[1], totals[args.clients]
    serial, batched = n1 / t1, n8 / t8
    print(f"model: {model_dir}  max_tokens={args.max_tokens}  rounds={args.rounds}")
    print(f"one client at a time: {serial:8.1f} tokens/s  ({n1} tokens, mean batch {b1:.1f})")
    print(f"{args.clients} concurrent clients: {batched:8.1f} tokens/s  ({n8} tokens, mean batch {b8:.1f})")
    print(f"ratio: {batched / serial:.2f}x  (target >= 3x)")


if __name__ == "__main__":
    main()
