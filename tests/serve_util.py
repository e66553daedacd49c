"""A real xllava server on loopback for the serving tests: uvicorn in a thread, on a free port."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image


def model_dir_of(run_dir: Path) -> Path:
    """The trained model of a fast run (instruct, else align: as Pipeline.trained_model_dir)."""
    for stage in ("instruct", "align"):
        if (run_dir / stage / "model" / "config.json").exists():
            return run_dir / stage / "model"
    raise FileNotFoundError(f"no trained model in {run_dir}")


def world_images(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "world" / "images").glob("*.png"))


def data_url(image: Path | Image.Image, fmt: str = "PNG") -> str:
    if isinstance(image, Path):
        raw, mime = image.read_bytes(), "image/png"
    else:
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        raw, mime = buf.getvalue(), f"image/{fmt.lower()}"
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


@contextmanager
def running_server(model_dir: Path, log_level: str = "warning", **settings) -> Iterator[str]:
    """Serve model_dir on 127.0.0.1 (a free port); yield the base URL (without /v1). log_level "info"
    turns uvicorn's access log on."""
    import torch
    import uvicorn

    from xllava.serve.app import create_app
    from xllava.serve.config import ServeConfig

    threads = torch.get_num_threads()  # the server sets the process's torch threads; restore them after
    app = create_app(model_dir, ServeConfig(**settings))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        torch.set_num_threads(threads)


def http_json(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    """A raw request (for what the openai client would not send); returns status and JSON body."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
