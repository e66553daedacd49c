"""Hostile requests against a real `xllava serve` process: what each costs the server.

Starts the server as bench/serve.py does (the fast tiny model, built once), with its default limits,
then sends, one kind at a time:

- the thin image: a 1 x 20000 PNG of 157 bytes (few pixels; the processor would scale it up);
- the near-limit text body: one text part just under the 48 MB body limit, and the same text with
  a small image (so that it is parsed as JSON);
- a decompression bomb: a 30000 x 30000 PNG of about 100 kB;
- the largest image the default pixel cap lets through (4000 x 4000, a few kB of PNG) - allowed, shown
  for scale;
- 330 concurrent ordinary requests (more than max_queue + max_batch_size).

For each it prints the status, the wall time and the growth of the server's peak RSS over its RSS
before (the peak is reset through /proc/PID/clear_refs before each kind); a normal request's time and
growth are measured the same way as the baseline, and its greedy answer is compared before and after.
It asserts nothing.

    python bench/serve_hostile.py                 # builds the fast tiny model once (~30 s)
    python bench/serve_hostile.py --model-dir runs/tiny/instruct/model
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import FAST, ROOT, free_port, images_of, start_server  # noqa: E402  (bench/serve.py)

MIB = 1 << 20
# bench/serve.py's fast recipe, with the stages the tiny recipe's instruct data needs (datagen, vocab)
STAGES = "stages=[world, datagen, vocab, tower, align, instruct]"


def build_model(work: Path) -> Path:
    from xllava.config import load_recipe
    from xllava.pipeline import Pipeline

    sets = [s for s in FAST if not s.startswith("stages=")] + [STAGES, f"output_dir={work}"]
    pipeline = Pipeline(load_recipe(ROOT / "recipes" / "tiny.yaml", sets), log=lambda _: None)
    pipeline.run()
    return pipeline.trained_model_dir()


# ---------------------------------------------------------------- the server's memory


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> int:
    """Reset the peak RSS (VmHWM) to the current RSS; returns the RSS in KiB."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # older kernels: the peak then covers the whole run
    return _status_kib(pid, "VmRSS")


def peak_growth_mib(pid: int, rss_before_kib: int) -> float:
    return (_status_kib(pid, "VmHWM") - rss_before_kib) / 1024


# ---------------------------------------------------------------- the requests


def post(base: str, body: bytes, timeout: float = 600) -> tuple[int, dict | None, float]:
    req = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, data = r.status, json.load(r)
    except urllib.error.HTTPError as e:
        status, data = e.code, json.load(e)
    return status, data, time.perf_counter() - start


def chat(content: list[dict] | str, max_tokens: int = 8) -> bytes:
    # sampled with a fixed seed: the fast model's greedy answer is often empty, a seeded one is text
    return json.dumps({"model": "xllava", "messages": [{"role": "user", "content": content}],
                       "max_tokens": max_tokens, "temperature": 1.0, "seed": 7}).encode()


def with_image(url: str, text: str = "Describe the picture.") -> list[dict]:
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]


def png_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def thin_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 20000), "white").save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 30000) -> bytes:
    """A 1-bit PNG of side x side zeros, written chunk by chunk (never held decoded here)."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def big_allowed_png(side: int = 4000) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), "gray").save(buf, "PNG")
    return buf.getvalue()


def error_text(data: dict | None) -> str:
    return (data or {}).get("error", {}).get("message", "")[:110] if data and "error" in data else "answered"


def measure(pid: int, base: str, label: str, body: bytes) -> tuple[float, float]:
    rss = reset_peak(pid)
    status, data, wall = post(base, body)
    growth = peak_growth_mib(pid, rss)
    print(f"{label:<28} {status:>4} {wall:8.3f} s  peak RSS +{growth:7.1f} MiB  {error_text(data)}", flush=True)
    return wall, growth


def flood(pid: int, base: str, image: str, n: int) -> None:
    rss = reset_peak(pid)
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def one() -> None:
        body = chat(with_image(image), max_tokens=8)
        barrier.wait()
        try:
            status, _, wall = post(base, body)
        except OSError:  # refused at the socket: counted as status 0
            status, wall = 0, float("nan")
        with lock:
            results.append((status, wall))

    threads = [threading.Thread(target=one) for _ in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - start
    growth = peak_growth_mib(pid, rss)
    by_status: dict[int, list[float]] = defaultdict(list)
    for status, wall in results:
        by_status[status].append(wall)
    print(f"{n} concurrent requests: {total:.2f} s in all, peak RSS +{growth:.1f} MiB", flush=True)
    for status, walls in sorted(by_status.items()):
        walls.sort()
        print(f"  status {status}: {len(walls):4d} requests, wall min {walls[0]:.3f} / median "
              f"{statistics.median(walls):.3f} / p90 {walls[int(0.9 * (len(walls) - 1))]:.3f} / max {walls[-1]:.3f} s",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, help="an X-LLaVA directory (default: build the fast tiny model)")
    ap.add_argument("--world", type=Path, help="folder with images/ (default: the model's run)")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-serve-hostile"),
                    help="where the fast model is built")
    ap.add_argument("--concurrent", type=int, default=330)
    args = ap.parse_args()

    model_dir = args.model_dir or build_model(args.work)
    image = images_of(model_dir, args.world)[0]
    port = free_port()
    server = start_server(model_dir, port)
    base = f"http://127.0.0.1:{port}"
    pid = server.pid
    try:
        normal = chat(with_image(image), max_tokens=16)
        post(base, normal)  # warm-up: first-call allocations are not charged to anyone
        _, first, _ = post(base, normal)
        print(f"server pid {pid}, RSS {_status_kib(pid, 'VmRSS') / 1024:.0f} MiB after warm-up; model {model_dir}")
        print(f"{'request':<28} {'code':>4} {'wall':>10}  {'':>25}  message")
        base_wall, base_growth = measure(pid, base, "normal (baseline)", normal)
        near_limit = chat("a" * (48 * MIB - 4096))
        hostile = [
            ("thin image 1x20000", chat(with_image(png_url(thin_png())))),
            (f"text body {len(near_limit) / MIB:.1f} MiB", near_limit),
            ("text body + image", chat(with_image(image, "a" * (48 * MIB - 4096 - len(image))))),
            ("bomb 30000x30000", chat(with_image(png_url(bomb_png())))),
        ]
        results = {label: measure(pid, base, label, body) for label, body in hostile}
        measure(pid, base, "allowed 4000x4000 (scale)", chat(with_image(png_url(big_allowed_png()))))
        flood(pid, base, image, args.concurrent)
        _, after, _ = post(base, normal)
        same = first["choices"][0]["message"]["content"] == after["choices"][0]["message"]["content"]
        print(f"normal answer unchanged afterwards: {same}  ({after['choices'][0]['message']['content']!r})")
        worst_wall = max(w for w, _ in results.values())
        worst_growth = max(g for _, g in results.values())
        print(f"hostile requests: slowest {worst_wall:.3f} s ({worst_wall / base_wall:.1f}x the normal request's "
              f"{base_wall:.3f} s), largest peak RSS growth {worst_growth:.1f} MiB (normal: {base_growth:.1f} MiB)")
        print(f"server RSS at the end: {_status_kib(pid, 'VmRSS') / 1024:.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
