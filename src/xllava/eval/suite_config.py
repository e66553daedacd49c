"""Typed configs of the evaluation suite and its judge.

Only pydantic is imported here, so xllava.config can import these classes (e.g. to add
`EvalConfig.suite: EvalSuiteConfig | None`) without an import cycle.
"""

from __future__ import annotations

from typing import Literal

from xllava.strict import Strict as _Strict


class JudgeConfig(_Strict):
    """Where the judge is. base_url None means the built-in world judge (xllava.eval.world_judge),
    served on loopback for the run: a scene-graph fact checker standing in for GPT-4 offline."""

    base_url: str | None = None
    model: str = "gpt-4o-2024-11-20"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable
    temperature: float = 0.2
    max_tokens: int = 512
    max_retries: int = 2  # the openai client's own retries (connection errors, 408/409/429/5xx)
    timeout_s: float = 120.0
    concurrency: int = 4


Benchmark = Literal["short", "vqav2", "gqa", "pope", "mmbench", "llava_bench", "preference"]
ALL_BENCHMARKS: list[Benchmark] = ["short", "vqav2", "gqa", "pope", "mmbench", "llava_bench", "preference"]


class EvalSuiteConfig(_Strict):
    """The `eval` stage's suite (xllava.eval.suite)."""

    languages: list[str] = ["en", "ko"]
    benchmarks: list[Benchmark] = list(ALL_BENCHMARKS)
    batch_size: int = 32
    max_new_tokens: int = 8  # short answers and option letters
    long_max_new_tokens: int = 64  # LLaVA-Bench and preference answers
    limit: int | None = None  # first N questions per benchmark and language (MMBench: N questions, all rotations)
    image_first: bool = True
    # post-prompt of the short-answer formats: the world's own instruction (what the tiny models were
    # trained with) or LLaVA-1.5's "Answer the question using a single word or phrase."
    short_post_prompt: Literal["world", "llava"] = "world"
    judge: JudgeConfig = JudgeConfig()
    # preference opponents: name -> LLaVA model directory (relative paths: against the run directory,
    # i.e. the world directory's parent), e.g. {align: align/model}
    opponents: dict[str, str] = {}
    # preference variants: word limits, null = full length (X-LLaVA reports both, 30 words)
    preference_word_limits: list[int | None] = [None, 30]
