"""Typed configuration of the mvif generator (`xllava datagen`, and the `datagen` stage of a recipe).

Four parts: which images (`SelectionConfig`), which teacher and how to talk to it (`TeacherConfig`),
which items to keep (`QualityConfig`), and what it may cost (`prices`, `budget_usd`). The API key is
never a config field: only the name of the environment variable that holds it, so a resolved config
written next to the data can never leak it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from xllava.strict import Strict

# Task types. The first four are the paper's; `short_answer` (one-word answers, several turns per
# conversation) is ours: the VQA part of the stage-2 mix that the tiny recipe trains on.
PAPER_TASKS = ("object", "location", "atmosphere", "conversation")
TASKS = (*PAPER_TASKS, "short_answer")


class SelectionConfig(Strict):
    """Images and their Visual Genome annotations. Paths are relative to the image root."""

    objects_file: str = "objects.json"
    relationships_file: str | None = "relationships.json"  # used when present
    image_dir: str = "."  # where `image_url` basenames / `{image_id}.jpg` are looked up
    # The paper picks images with about 3 to 10 main objects. A main object is an annotated object
    # whose box covers at least `main_object_min_area` of the image (duplicates with the same name
    # and box, common in Visual Genome, count once).
    min_main_objects: int = 3
    max_main_objects: int = 10
    main_object_min_area: float = 0.01
    max_listed_objects: int = 20  # objects named in the prompt, largest first
    max_listed_relations: int = 20
    # a file of image ids (one per line): only these images are sent (e.g. a train split, so that no
    # benchmark image reaches the teacher); relative to the image root
    image_ids_file: str | None = None
    num_shards: int = 1
    shard: int = 0
    limit: int | None = None  # at most this many images (after sharding)

    @model_validator(mode="after")
    def _check(self) -> SelectionConfig:
        if not 0 <= self.shard < self.num_shards:
            raise ValueError(f"shard must be in [0, num_shards={self.num_shards}), got {self.shard}")
        if self.min_main_objects > self.max_main_objects:
            raise ValueError("min_main_objects must not exceed max_main_objects")
        return self


class TeacherConfig(Strict):
    """An OpenAI-compatible vision endpoint, reached through the official `openai` client."""

    base_url: str | None = None  # e.g. https://api.openai.com/v1, http://localhost:8000/v1 (vLLM)
    model: str = "gpt-4o"
    # read at run time; the key itself is never stored. None: the endpoint takes no key
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: float = 0.2
    top_p: float | None = None
    max_tokens: int = 2048
    seed: int | None = None
    # json_schema: response_format with our schema (strict); json_object: JSON mode plus our own
    # validation; auto: json_schema until the endpoint rejects it, then JSON mode for the rest.
    structured_output: Literal["auto", "json_schema", "json_object"] = "auto"
    concurrency: int = Field(16, ge=1)
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute (prompt estimate + max_tokens, settled on usage)
    timeout_s: float = Field(120.0, gt=0)  # per attempt: connecting, headers and the whole body
    request_timeout_s: float | None = Field(None, gt=0)  # per request, all attempts and waits; None: no limit
    max_answer_chars: int = Field(200_000, gt=0)  # a longer answer is refused (no training item is that long)
    max_attempts: int = Field(6, ge=1)  # the retry budget of one request, first try included
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    image_max_side: int = 1024  # larger images are resized before sending
    image_max_bytes: int = 4_000_000
    image_detail: Literal["auto", "low", "high"] = "auto"


class QualityConfig(Strict):
    min_script_ratio: float = 0.6  # share of a field's letters in its language's script
    near_duplicate_jaccard: float = 0.9  # character-3-gram Jaccard of two items within an image
    conversation_turns: int = 8  # the paper's conversation type has exactly this many turns


class ModelPrice(Strict):
    input_per_mtok: float  # USD per million prompt tokens
    output_per_mtok: float  # USD per million completion tokens


# List prices (USD per million tokens) published by OpenAI for these models in 2024-2025; check
# them before a large run and override in the config. Unknown models cost 0 and are warned about.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input_per_mtok=2.5, output_per_mtok=10.0),
    "gpt-4o-2024-11-20": ModelPrice(input_per_mtok=2.5, output_per_mtok=10.0),
    "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.6),
    "gpt-4.1": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0),
    "gpt-4.1-mini": ModelPrice(input_per_mtok=0.4, output_per_mtok=1.6),
}


class DatagenConfig(Strict):
    """The whole generator: `xllava datagen generate --config FILE`, or a recipe's `datagen:` section."""

    # the images and their Visual Genome annotations (`selection.objects_file`, ...): a folder,
    # relative to the run directory in a recipe
    images: str | None = None
    tasks: list[str] = list(PAPER_TASKS)
    languages: list[str] = ["en", "ko", "zh"]
    prompt_version: str = "v1"
    selection: SelectionConfig = SelectionConfig()
    teacher: TeacherConfig = TeacherConfig()
    quality: QualityConfig = QualityConfig()
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    budget_usd: float | None = None  # hard stop: no request starts that could cross it
    retry_failed: bool = False  # request keys whose last record is a failure again
    store: str = "store.jsonl"  # relative to the output directory
    # where the training records put the image: "<image>\nquestion" (LLaVA's usual order) or
    # "question\n<image>" (then the image tokens see the question; the eval's image_first must match)
    image_first: bool = True

    @model_validator(mode="after")
    def _check(self) -> DatagenConfig:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task type(s) {unknown}; known: {list(TASKS)}")
        if not self.tasks or not self.languages:
            raise ValueError("tasks and languages must not be empty")
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages has duplicates: {self.languages}")
        return self
