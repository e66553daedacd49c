"""The world's configs: the `world` section of a recipe (the synthetic scenes and what is written
from them) and the `tower` section (pretraining a from-scratch tower on the scene graphs).

A leaf: pydantic and constants only, so every world module can import it."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from xllava.strict import Strict

# the short-answer question types of the world's benchmark
CATEGORIES = ("colour", "kind_at", "relation", "count", "exists", "atmosphere")


class WorldConfig(Strict):
    """The embedded synthetic trilingual world (xllava.world)."""

    seed: int = 0
    n_train_scenes: int = 1200
    n_eval_scenes: int = 120
    image_size: int = 96
    grid_size: int = 3
    min_objects: int = 2
    max_objects: int = 5
    languages: list[str] = ["en", "ko", "zh"]
    # stage-1 captions: objects in reading order (`listing`), or each object named first and its
    # attributes and relations after it (`object_first`), which asks for lookups by kind
    caption_style: Literal["listing", "object_first"] = "listing"
    # held-out short-answer questions per question type per language
    eval_questions_per_type: int = 60
    # short-answer training questions per train scene per language (the VQA part of the stage-2 mix)
    train_questions_per_scene: int = 6
    # turns per short-answer training record (min, max): more turns share one image's tokens
    short_answer_turns: tuple[int, int] = (3, 6)
    # the one-word instruction on every question (LLaVA-1.5's VQA data) or on each record's first
    # question only: the answer style is set once, and the turns after it cost ~40% fewer tokens
    short_answer_instruction: Literal["every_turn", "first_turn"] = "every_turn"
    # no two turns of a record about the same object kind: otherwise answers can be copied from the
    # turns before them ("Is there a red ball?" ... "What colour is the ball?"), and a small model
    # learns that instead of looking (held-out colour stayed at chance; docs/results/measured-figures.md)
    short_answer_independent_turns: bool = True
    # "<image>\nquestion" (LLaVA's usual order) or "question\n<image>" in short-answer records: after
    # the question, the image tokens can see what is asked (the eval's `image_first` must match)
    short_answer_image_first: bool = True
    # about the same number of training questions per scene (so records of about the same length
    # and little padding in random batches) instead of questions drawn uniformly from the pools
    spread_questions_over_scenes: bool = True
    # relative share of each question type among the training questions (types left out weigh 1):
    # a type learned in a few hundred steps (atmosphere) can give its share to a slow one (relation)
    train_question_mix: dict[str, float] = {}
    # seconds the world teacher waits before each answer (0 in recipes; the datagen bench sets 0.2 to
    # stand for a remote teacher's latency)
    teacher_latency_s: float = 0.0

    @model_validator(mode="after")
    def _turns_in_order(self) -> WorldConfig:
        low, high = self.short_answer_turns
        if not 1 <= low <= high:
            raise ValueError(f"short_answer_turns must be (min, max) with 1 <= min <= max, got {self.short_answer_turns}")
        return self

    @model_validator(mode="after")
    def _mix_known(self) -> WorldConfig:
        unknown = sorted(set(self.train_question_mix) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"train_question_mix: unknown question types {unknown}; known: {list(CATEGORIES)}")
        if any(w < 0 for w in self.train_question_mix.values()) or not any(self.question_weights().values()):
            raise ValueError(f"train_question_mix: weights must be >= 0 and not all 0, got {self.train_question_mix}")
        return self

    def question_weights(self) -> dict[str, float]:
        return {c: float(self.train_question_mix.get(c, 1.0)) for c in CATEGORIES}


class TowerConfig(Strict):
    """Pretraining a from-scratch vision tower on the world's scene graphs (xllava.world.tower):
    the offline stand-in for a pretrained CLIP."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0
    # scenes generated and rendered in memory for this stage only, on top of the world's train
    # scenes (CLIP saw millions of images; a tower that learns relationships from 1,200 memorises
    # them). Drawn from their own seed stream; none has the content of an eval scene.
    extra_scenes: int = 0
