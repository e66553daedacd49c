"""One benchmark question, whatever format it was read from, and the errors bad input raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class BenchmarkFormatError(ValueError):
    """Bad benchmark input, naming the file, the line (or row / key) and the field."""

    def __init__(self, path: Path | str, where: str | int | None, field_name: str | None, message: str):
        if isinstance(where, int):
            place = f"{path}, line {where}"
        else:
            place = f"{path}" + (f", {where}" if where is not None else "")
        super().__init__(f"{place}: " + (f"field {field_name!r}: " if field_name else "") + message)


@dataclass
class EvalItem:
    """What the generator asks and what the scorer compares.

    `prompt` is the exact text given to the model (question plus the benchmark's post-prompt or
    options); `question` the bare question (for judges and language checks); `answers` the gold
    answers (ten annotators for VQAv2, an option letter for MMBench, empty for judged benchmarks)."""

    question_id: str
    image: Path
    question: str
    prompt: str
    lang: str
    answers: list[str] = field(default_factory=list)
    category: str = ""
    extra: dict = field(default_factory=dict)
