"""Typed configs of the `eval` stage: which benchmark files, how each is scored, and the judge.

A leaf (pydantic only), so xllava.config can hold `EvalConfig` without an import cycle.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from xllava.strict import Strict as _Strict


class JudgeConfig(_Strict):
    """An OpenAI-compatible judge (LLaVA-Bench review, pairwise preference)."""

    base_url: str | None = None  # …/v1; needed by llava_bench and preference
    model: str = "gpt-4o-2024-11-20"
    api_key_env: str | None = "OPENAI_API_KEY"  # the key is read from this variable; None: no key
    temperature: float = 0.2
    max_tokens: int = 512
    max_retries: int = 2  # the openai client's own retries (connection errors, 408/409/429/5xx)
    timeout_s: float = 120.0
    concurrency: int = 4


BenchmarkFormat = Literal["llava", "vqav2", "gqa", "pope", "mmbench", "llava_bench"]
FORMATS: tuple[str, ...] = ("llava", "vqav2", "gqa", "pope", "mmbench", "llava_bench")


class BenchmarkSpec(_Strict):
    """One benchmark as its files are published. Relative paths resolve against the run directory;
    with `languages`, `{lang}` in a path is replaced and the benchmark is read once per language."""

    format: BenchmarkFormat
    questions: str  # LLaVA question JSONL, VQAv2/GQA/POPE question JSON(L), MMBench TSV, LLaVA-Bench questions
    name: str | None = None  # key of its scores (default: the format); unique within the stage
    languages: list[str] | None = None  # None: one file, each question's language detected
    images: str | None = None  # image folder (default: the questions file's folder; MMBench: inline)
    # VQAv2 annotations (None: no scores, the EvalAI submission only); GQA: the questions JSON holding
    # the answers of a LLaVA-style question JSONL; POPE: the folder of coco_pope_{category}.json labels
    # of LLaVA's question file
    annotations: str | None = None
    # VQAv2 test-dev: the full test2015 question file, so the EvalAI submission lists every question
    submission_questions: str | None = None
    context: str | None = None  # LLaVA-Bench context JSONL
    references: str | None = None  # LLaVA-Bench reference answers JSONL
    # the published dataset, e.g. vqav2-testdev, gqa-testdev-balanced, pope, llava-bench-in-the-wild,
    # bvqa-ko: the report places the paper's number beside a known one
    dataset: str | None = None
    # which mode's number is the score: `official` (what the benchmark's own code computes; for the
    # llava format the paper's rule, Korean exact match and English containment) or `extended`
    # (xllava's multilingual reading); both are kept under `modes`. llava format only: `exact_match`
    # scores each category apart, with its majority baseline, and averages them
    scoring: Literal["official", "extended", "exact_match"] = "official"
    # text appended to each question: `default` (the format's own: LLaVA-1.5's for VQAv2/GQA/POPE,
    # none for llava), `short_answer` (the instruction of the short-answer training data), `llava`
    # ("Answer the question using a single word or phrase."), `none`, or any other text
    post_prompt: str = "default"
    max_new_tokens: int | None = None  # default: eval.max_new_tokens (llava_bench: long_max_new_tokens)
    limit: int | None = None  # first N questions per language, taken in turn from each category

    @property
    def key(self) -> str:
        return self.name or self.format

    def paths(self) -> dict[str, str]:
        """The path fields that are set (recipe field name -> value)."""
        fields = ("questions", "images", "annotations", "context", "references")
        return {f: getattr(self, f) for f in fields if getattr(self, f) is not None}

    @model_validator(mode="after")
    def _check(self) -> BenchmarkSpec:
        if self.format == "llava_bench" and (self.context is None or self.references is None):
            raise ValueError("a llava_bench benchmark needs `context` and `references`")
        if self.scoring == "exact_match" and self.format != "llava":
            raise ValueError("scoring exact_match is for the llava format")
        return self


class EvalConfig(_Strict):
    """The `eval` stage: every listed benchmark, judged where it needs a judge, and preference."""

    benchmarks: list[BenchmarkSpec] = []
    only: list[str] | None = None  # run only these benchmarks (by name)
    headline: str | None = None  # the benchmark whose scores the run prints (default: the first)
    limit: int | None = None  # at most N questions per benchmark and language (a smaller own limit wins)
    batch_size: int = 32
    max_new_tokens: int = 16  # short answers and option letters
    long_max_new_tokens: int = 256  # LLaVA-Bench and preference answers
    image_first: bool = True  # "<image>\nquestion" (LLaVA's usual order) or "question\n<image>"
    judge: JudgeConfig = JudgeConfig()
    # pairwise preference: name -> LLaVA model directory (relative: against the run directory),
    # e.g. {align: align/model}, on the questions of the llava_bench benchmark named `preference_on`
    opponents: dict[str, str] = {}
    preference_on: str | None = None
    # preference variants: word limits, null = full length (X-LLaVA reports both, 30 words)
    preference_word_limits: list[int | None] = [None, 30]

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        keys = [b.key for b in self.benchmarks]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"eval.benchmarks: names {dup} appear twice; give each a `name`")
        for field, names in (("only", self.only or []), ("headline", [self.headline] if self.headline else []),
                             ("preference_on", [self.preference_on] if self.preference_on else [])):
            unknown = [n for n in names if n not in keys]
            if unknown:
                raise ValueError(f"eval.{field}: {unknown} are not benchmark names {keys}")
        if self.preference_on and next(b for b in self.benchmarks if b.key == self.preference_on).format != "llava_bench":
            raise ValueError("eval.preference_on must name a llava_bench benchmark")
        return self

    def limit_of(self, spec: BenchmarkSpec) -> int | None:
        limits = [n for n in (self.limit, spec.limit) if n]
        return min(limits) if limits else None

    def selected(self) -> list[BenchmarkSpec]:
        return [b for b in self.benchmarks if self.only is None or b.key in self.only]

    def needs_judge(self) -> bool:
        chosen = self.selected()
        return any(b.format == "llava_bench" for b in chosen) or bool(self.opponents and self.preference_on)
