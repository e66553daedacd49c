"""`xllava chat MODEL_DIR [--image PATH]`: talk to a model in the terminal.

The answer streams as it is generated; the conversation is kept across turns; `/image PATH` starts
a conversation about another picture. Korean and English input both work (input is read as UTF-8
and NFC-normalised, so decomposed Hangul from some terminals reaches the model as it was trained).
The model runs in this process on the same batching engine as the server.
"""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path
from typing import TextIO

from PIL import Image

HELP = """commands:
  /image PATH   talk about another image (starts a new conversation) · 다른 이미지로 새 대화
  /noimage      continue without an image (new conversation)
  /reset        forget the conversation, keep the image · 대화 초기화
  /quit         leave (or Ctrl-D) · 종료"""


def _utf8(stream: TextIO) -> None:
    # a C/POSIX locale would make Python read Korean as undecodable bytes; read and write UTF-8 always
    if (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
        try:
            stream.reconfigure(encoding="utf-8", errors="replace")  # type: ignore[attr-defined]
        except (AttributeError, ValueError):
            pass


def _load(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


class Chat:
    def __init__(self, model_dir: Path, max_tokens: int = 256, temperature: float = 0.0,
                 system: str | None = None, out: TextIO = sys.stdout, device: str = "auto",
                 seed: int | None = None, dtype: str = "auto"):
        import torch

        from xllava.model.assemble import load_llava
        from xllava.serve.app import resolve_device, resolve_dtype
        from xllava.serve.engine import Engine

        self.out = out
        dev = resolve_device(device)
        self.model, self.processor = load_llava(model_dir, dtype=resolve_dtype(dtype, dev))
        if dev.type == "cpu":
            torch.set_num_threads(1)  # see ServeConfig.cpu_threads
        self.model.to(dev)
        self.engine = Engine(self.model, self.processor.tokenizer, max_batch_size=1, batch_wait_ms=0).start()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed  # sampling seed of every turn (None: fresh randomness)
        self.system = system
        self.image: Image.Image | None = None
        self.messages: list[dict] = []

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def set_image(self, path: Path | None) -> None:
        self.image = _load(path) if path is not None else None
        self.messages = []

    def ask(self, question: str) -> str | None:
        """One turn: stream the answer to `out`, keep it in the history. None if it failed."""
        from xllava.serve.errors import ApiError
        from xllava.serve.prompt import encode
        from xllava.serve.sampling import Sampling

        content: list[dict] = [{"type": "text", "text": question}]
        if self.image is not None and not self.messages:
            content.insert(0, {"type": "image"})
        turn = [*self.messages, {"role": "user", "content": content}]
        system = [{"role": "system", "content": self.system}] if self.system else []
        try:
            prompt = encode(self.processor, system + turn, [self.image] if self.image is not None else [], 1 << 30)
        except ApiError as e:
            self.say(f"[error: {e.message}]")
            return None
        room = (self.engine.max_positions or 1 << 30) - len(prompt.input_ids)
        if room < 1:
            self.say("[the conversation is longer than the model's context: /reset to start over]")
            return None
        answer = ""
        self.say("model> ", end="")
        try:
            for ev in self.engine.generate(prompt, min(self.max_tokens, room), Sampling(self.temperature, seed=self.seed)):
                if ev.kind == "delta":
                    answer += ev.text
                    self.say(ev.text, end="")
                elif ev.kind == "error":
                    self.say(f"\n[error: {ev.text}]")
                    return None
        except KeyboardInterrupt:  # stop this answer, keep the chat
            self.say(" [interrupted]")
            return None
        self.say()
        self.messages = [*turn, {"role": "assistant", "content": answer}]
        return answer

    def command(self, line: str) -> bool:
        """Handle a /command; False to quit."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/image":
            path = Path(arg).expanduser()
            try:
                self.set_image(path)
            except (OSError, ValueError) as e:
                self.say(f"[cannot open image {path}: {e}]")
                return True
            self.say(f"[image: {path} · new conversation · 새 대화]")
        elif name == "/noimage":
            self.set_image(None)
            self.say("[no image · new conversation]")
        elif name == "/reset":
            self.messages = []
            self.say("[new conversation · 새 대화]")
        else:
            self.say(HELP)
        return True

    def loop(self, inp: TextIO) -> None:
        interactive = inp.isatty()
        if interactive:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass
        while True:
            try:
                line = input("you> ") if interactive else inp.readline()
            except (EOFError, KeyboardInterrupt):
                break
            if not interactive and line == "":
                break
            line = unicodedata.normalize("NFC", line.strip())
            if not line:
                continue
            if not interactive:
                self.say(f"you> {line}")
            if line.startswith("/"):
                if not self.command(line):
                    break
                continue
            self.ask(line)
        self.engine.stop()


def run_chat(model_dir: Path, image: Path | None = None, max_tokens: int = 256, temperature: float = 0.0,
             system: str | None = None, device: str = "auto", seed: int | None = None,
             dtype: str = "auto") -> None:
    _utf8(sys.stdin)
    _utf8(sys.stdout)
    print(f"loading {model_dir} ...", file=sys.stderr, flush=True)
    chat = Chat(model_dir, max_tokens, temperature, system, device=device, seed=seed, dtype=dtype)
    if image is not None:
        chat.set_image(image)
    chat.say(f"xllava chat · {Path(model_dir).resolve().name}" + (f" · image {image}" if image else ""))
    chat.say("Ask in Korean or English · 한국어나 영어로 물어보세요. /help for commands.")
    chat.loop(sys.stdin)
