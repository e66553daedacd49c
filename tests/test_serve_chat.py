"""`xllava chat` as a person would use it: a process reading lines, streaming answers, keeping the
conversation, switching images, Korean and English input."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata

from tests.serve_util import model_dir_of, world_images


def test_terminal_chat(fast_run):
    images = world_images(fast_run)
    korean = "공은 무슨 색이에요?"
    lines = [
        unicodedata.normalize("NFD", korean),  # decomposed Hangul, as some terminals send it
        "And where is it?",
        f"/image {images[1]}",
        "What is on the left?",
        "/image /no/such/file.png",
        "/help",
        "/quit",
        "never read",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LC_ALL": "C"}  # a C locale must not break Korean
    out = subprocess.run(
        [sys.executable, "-m", "xllava.cli", "chat", str(model_dir_of(fast_run)), "--image", str(images[0]),
         "--temperature", "1.0", "--max-tokens", "8", "--seed", "0"],
        input="\n".join(lines).encode(), capture_output=True, timeout=300, env=env,
    )
    text = out.stdout.decode("utf-8")
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert f"you> {korean}" in text  # read as UTF-8 and normalised to NFC
    assert text.count("model> ") == 3 and "[error" not in text
    answers = [line.removeprefix("model> ") for line in text.splitlines() if line.startswith("model> ")]
    assert all(answers), text  # sampled at temperature 1, the 4-step model says something each turn
    assert f"[image: {images[1]}" in text and "[cannot open image /no/such/file.png" in text
    assert "/noimage" in text  # the help
    assert "never read" not in text  # /quit ended the chat
