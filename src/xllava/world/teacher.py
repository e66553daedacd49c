"""The embedded world's teacher: an OpenAI-compatible server that answers the generator's prompts.

It plays GPT-4V for the synthetic world. It recognises the scene from the image it is sent (sha256
of the file bytes, or of the decoded pixels when a client re-encoded the image losslessly), reads the
task and the target languages from the prompt's two fixed lines (see xllava.datagen.prompts), and
answers in the schema's JSON with content from the world's own builders (xllava.world.instructions:
`mvif_records`, `short_answer_records`, seeded exactly as the world build seeds them), so the data
that comes over HTTP says what the world's instruct.jsonl says. Short-answer questions are assigned to
scenes by the world's balanced sampler over all train scenes, which is why the teacher rebuilds that
assignment once at start-up; a scene without assigned questions gets a balanced draw of its own.

The HTTP side, with latency and fault injection, is the generic server of
xllava.datagen.openai_server (`create_app`, `FaultConfig`, `ServerThread`): see its docstring to
plug in another responder (an evaluation judge, for example). The names are re-exported here.

    xllava world teacher WORLD_DIR --port 8011 --latency 0.2 --rate-429 0.1
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import sys
from pathlib import Path

from PIL import Image

from xllava.datagen.openai_server import (
    ChatRequest,
    FaultConfig,
    Reply,
    ResponderError,
    ServerProcess,
    ServerThread,
    create_app,
    serve_forever,
)
from xllava.world import phrases as P
from xllava.world.build import instruct_records
from xllava.world.build import seeded_rng as world_rng  # the build's seeding, so the content matches it
from xllava.world.config import WorldConfig
from xllava.world.instructions import mvif_records, short_answer_packing, short_answer_records
from xllava.world.lexicon import LANGUAGES
from xllava.world.questions import sample_balanced
from xllava.world.scene import Scene

__all__ = ["WorldTeacher", "start_world_teacher", "world_teacher_process", "serve_world_teacher", "ChatRequest",
           "FaultConfig", "Reply", "ResponderError", "ServerProcess", "ServerThread", "create_app"]

MODEL_ID = "world-teacher"
_TASK_LINE = re.compile(r"^Task type: .*\(id: (\w+)\)\s*$", re.MULTILINE)
_LANG_LINE = re.compile(r"^Target languages: (.+)$", re.MULTILINE)
_MVIF = ("object", "location", "atmosphere", "conversation")


def _pixel_digest(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        return hashlib.sha256(im.convert("RGB").tobytes()).hexdigest()


def _turns(records: list[dict]) -> list[dict]:
    """Records of one item (one per language, same content) as the schema's turns."""
    turns: list[dict] = []
    for record in records:
        conv = record["conversations"]
        for i in range(0, len(conv), 2):
            if len(turns) <= i // 2:
                turns.append({"question": {}, "answer": {}})
            turns[i // 2]["question"][record["lang"]] = conv[i]["value"].removeprefix("<image>\n").removesuffix("\n<image>")
            turns[i // 2]["answer"][record["lang"]] = conv[i + 1]["value"]
    return turns


def _conversations(records: list[dict]) -> list[dict]:
    """Group records by item (their id without the language suffix), in order."""
    items: dict[str, list[dict]] = {}
    for record in records:
        items.setdefault(record["id"].rsplit("-", 1)[0], []).append(record)
    return [{"turns": _turns(group)} for group in items.values()]


class WorldTeacher:
    """The responder: ChatRequest -> Reply with the JSON answer for the recognised scene."""

    def __init__(self, world_dir: Path):
        world_dir = Path(world_dir)
        summary = json.loads((world_dir / "world.json").read_text(encoding="utf-8"))
        self.cfg = WorldConfig.model_validate(summary["config"])
        graphs = json.loads((world_dir / "scene_graphs.json").read_text(encoding="utf-8"))
        self.scenes: dict[str, Scene] = {}
        self.images: dict[str, str] = {}
        self._by_bytes: dict[str, str] = {}
        self._by_pixels: dict[str, str] = {}
        for graph in graphs:
            scene = Scene.from_dict(graph)
            self.scenes[scene.scene_id] = scene
            self.images[scene.scene_id] = graph["image"]
            data = (world_dir / graph["image"]).read_bytes()
            self._by_bytes[hashlib.sha256(data).hexdigest()] = scene.scene_id
        self._world_dir = world_dir
        # The world's short-answer assignment (balanced over all train scenes), rebuilt exactly as
        # build.instruct_records makes it, in every language the world speaks.
        train = [s for s in self.scenes.values() if s.split == "train"]
        every_language = self.cfg.model_copy(update={"languages": list(LANGUAGES)})
        self._short: dict[str, list[dict]] = {}
        for record in instruct_records(train, every_language, mvif=False):
            self._short.setdefault(record["image"], []).append(record)

    # ------------------------------------------------------------ recognising the request

    def scene_of(self, image: bytes) -> Scene:
        scene_id = self._by_bytes.get(hashlib.sha256(image).hexdigest())
        if scene_id is None:
            if not self._by_pixels:  # built on first need: most clients send the bytes unchanged
                for sid, rel in self.images.items():
                    self._by_pixels[_pixel_digest((self._world_dir / rel).read_bytes())] = sid
            try:
                scene_id = self._by_pixels.get(_pixel_digest(image))
            except OSError:
                scene_id = None
        if scene_id is None:
            raise ResponderError(400, "the image is not one of this world's scenes")
        return self.scenes[scene_id]

    @staticmethod
    def task_and_languages(prompt: str) -> tuple[str, list[str]]:
        task, langs = _TASK_LINE.search(prompt), _LANG_LINE.search(prompt)
        if not task or not langs:
            raise ResponderError(400, "the prompt has no 'Task type: ... (id: TASK)' or 'Target languages:' line")
        languages = [part.strip().split(" ", 1)[0] for part in langs.group(1).split(",")]
        unknown = [lang for lang in languages if lang not in LANGUAGES]
        if unknown:
            raise ResponderError(400, f"the world teacher writes {', '.join(LANGUAGES)} only, not {unknown}")
        return task.group(1), languages

    # ------------------------------------------------------------ answering

    def answer(self, scene: Scene, task: str, languages: list[str]) -> dict:
        image = self.images[scene.scene_id]
        if task in _MVIF:
            records = mvif_records(scene, task, image, languages, world_rng(self.cfg, scene.scene_id, task))
            out: dict = {}
            if task == "location":
                out["scene_graph"] = [
                    {"subject": P.definite(scene.by_id(r.subject), "en").removeprefix("the "),
                     "predicate": r.predicate,
                     "object": P.definite(scene.by_id(r.object), "en").removeprefix("the ")}
                    for r in scene.relations
                ]
            out["conversations"] = _conversations(records)
            return out
        if task == "short_answer":
            records = [r for r in self._short.get(image, []) if r["lang"] in languages]
            if not records:  # no question was assigned to this scene: draw a balanced set of its own
                rng = random.Random(f"world-teacher/{self.cfg.seed}/{scene.scene_id}/short_answer")
                questions = sample_balanced([scene], 1, rng)
                records = short_answer_records(scene, questions, image, languages, rng,
                                               **short_answer_packing(self.cfg))
            return {"conversations": _conversations(records)}
        raise ResponderError(400, f"unknown task type {task!r}")

    def __call__(self, request: ChatRequest) -> Reply:
        images = request.images()
        if len(images) != 1:
            raise ResponderError(400, f"expected one image as a data URL, got {len(images)}")
        scene = self.scene_of(images[0])
        task, languages = self.task_and_languages(request.text())
        content = json.dumps(self.answer(scene, task, languages), ensure_ascii=False)
        return Reply(content)


def world_app(world_dir: Path, faults: FaultConfig | None = None):
    return create_app(WorldTeacher(world_dir), faults, model_ids=(MODEL_ID,))


def start_world_teacher(world_dir: Path, faults: FaultConfig | None = None, host: str = "127.0.0.1",
                        port: int = 0) -> ServerThread:
    """The world teacher in a background thread; use as a context manager or call `.stop()`."""
    return ServerThread(world_app(world_dir, faults), host, port).start()


def serve_world_teacher(world_dir: Path, faults: FaultConfig | None = None, host: str = "127.0.0.1",
                        port: int = 8011, fd: int | None = None) -> None:
    serve_forever(world_app(world_dir, faults), host, port, fd)


def world_teacher_process(world_dir: Path, faults: FaultConfig | None = None) -> ServerProcess:
    """The world teacher in a child process on a free loopback port (`xllava world teacher --fd`);
    use as a context manager. Preferred for long runs: the server gets its own core."""
    f = faults or FaultConfig()
    command = [sys.executable, "-m", "xllava.world", "teacher", str(Path(world_dir).resolve()),
               "--latency", repr(f.latency_s), "--rate-429", repr(f.rate_429), "--rate-500", repr(f.rate_500),
               "--rate-malformed", repr(f.rate_malformed), "--rate-timeout", repr(f.rate_timeout),
               "--retry-after", repr(f.retry_after_s), "--hang", repr(f.hang_s), "--seed", str(f.seed)]
    if f.reject_json_schema:
        command.append("--no-json-schema")
    return ServerProcess(command)
