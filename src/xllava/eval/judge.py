"""LLM judges through any OpenAI-compatible endpoint (the official `openai` client).

- LLaVA-Bench review: the judge scores the reference (Assistant 1) and the candidate (Assistant 2)
  from the context; per category the relative score is mean(candidate) / mean(reference) * 100.
- Pairwise preference: the judge sees image, question, answers A and B, and is asked twice, once
  with the candidate as A and once as B. Position bias cancels: a win or a loss needs both orders
  to agree; orders that disagree make a tie.

A judgement whose call fails (after the client's own retries) or whose reply cannot be parsed is
*failed*: kept in the judgements file with its error, counted, and left out of every score. It is
never scored as zero or -1 (lmms-eval's LLaVA-W averages failed calls in as -1; see
reference/anchors-eval-data.md). Each judgement and summary records the judge model and the prompt
version. Judgements are appended to a JSONL as they come back; a rerun keeps the successful ones
made with the same judge, prompt version and answers, and asks again for the rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from openai import OpenAI

from xllava.eval.generate import read_predictions
from xllava.eval.items import EvalItem
from xllava.eval.judge_prompts import (
    OFFICIAL_REVIEW,
    OFFICIAL_REVIEW_VERSION,
    PAIRWISE_VERSION,
    REVIEW_VERSION,
    official_review_messages,
    pairwise_messages,
    parse_pairwise,
    parse_review,
    parse_review_official,
    review_messages,
)
from xllava.eval.suite_config import JudgeConfig

REVIEW_PROTOCOL = (
    "extended: LLaVA-Bench review: the judge scores reference (Assistant 1, shown first) and candidate "
    "1-10 from the context; relative score = mean(candidate) / mean(reference) x 100 per category; failed "
    "judgements excluded and counted"
)
OFFICIAL_REVIEW_PROTOCOL = (
    "official: LLaVA-Bench review as LLaVA-1.5 publishes it (rule.json text and system message, "
    "temperature 0.2, max_tokens 1024, first line split on spaces after commas become spaces); an "
    "unparsed reply counts as [-1, -1] and is averaged in, as summarize_gpt_review.py does; relative "
    "score = round(mean candidate, 3) / round(mean reference, 3) x 100, rounded to 0.1; calls that "
    "fail after retries are left out and counted (the published script retries until one succeeds)"
)
PAIRWISE_PROTOCOL = (
    "pairwise preference (X-LLaVA sec. 6): judge sees image, question, answers A and B; asked in both "
    "orders; win/lose only when both orders agree, otherwise tie; failed judgements excluded and counted"
)


def make_client(cfg: JudgeConfig, base_url: str | None = None) -> OpenAI:
    url = base_url or cfg.base_url
    if not url:
        raise ValueError("no judge endpoint: set judge.base_url")
    key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    return OpenAI(base_url=url, api_key=key or "not-needed",
                  max_retries=cfg.max_retries, timeout=cfg.timeout_s)


def ask(client: OpenAI, cfg: JudgeConfig, messages: list[dict]) -> tuple[str | None, str | None]:
    """(reply, None) or (None, error). Any failure of the call is an error string, never raised."""
    try:
        response = client.chat.completions.create(
            model=cfg.model, messages=messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens)
    except Exception as err:  # noqa: BLE001 - every failure becomes a counted, excluded judgement
        return None, f"{type(err).__name__}: {str(err)[:300]}"
    if not response.choices or response.choices[0].message.content is None:
        return None, "empty reply"
    return response.choices[0].message.content, None


def image_data_url(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _run_judgements(tasks: dict[str, Callable[[], dict]], digests: dict[str, str], out_path: Path,
                    identity: dict[str, str], concurrency: int) -> dict[str, dict]:
    """Run each task (key -> judgement row) unless the file already holds a successful judgement of
    the same answers (`digests`) by the same judge and prompt; append rows as they come back."""
    done: dict[str, dict] = {}
    for row in read_predictions(out_path):  # the same torn-tail tolerant reader as predictions
        key = str(row["question_id"])
        if (row.get("status") == "ok" and row.get("answer_digest") == digests.get(key)
                and all(row.get(k) == v for k, v in identity.items())):
            done[key] = row
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as f:
        for row in done.values():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        todo = [k for k in tasks if k not in done]
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for key, row in zip(todo, pool.map(lambda k: tasks[k](), todo), strict=True):
                row = {"question_id": key, **row, "answer_digest": digests[key], **identity}
                done[key] = row
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
    return {k: done[k] for k in tasks}


# ---------------------------------------------------------------- LLaVA-Bench review


def review(items: Sequence[EvalItem], answers: dict[str, str], client: OpenAI, cfg: JudgeConfig,
           out_path: Path, lang: str, mode: str = "official") -> dict:
    """Judge every item's answer against its reference; returns the summary. `official`: LLaVA-1.5's
    published rule, system message, max_tokens and parsing (summarise_review_official); `extended`:
    xllava's prompts, Korean rule for Korean questions, failed judgements excluded (summarise_review)."""
    official = mode == "official"
    version = OFFICIAL_REVIEW_VERSION if official else REVIEW_VERSION.get(lang, REVIEW_VERSION["en"])
    call_cfg = cfg.model_copy(update={"max_tokens": OFFICIAL_REVIEW["max_tokens"],
                                      "temperature": OFFICIAL_REVIEW["temperature"]}) if official else cfg

    def task(item: EvalItem) -> Callable[[], dict]:
        def run() -> dict:
            if official:
                messages = official_review_messages(item.extra["context"], item.question, item.extra["reference"],
                                                    answers[item.question_id], item.extra.get("variant", "in_the_wild"))
            else:
                messages = review_messages(item.extra["context"], item.question, item.extra["reference"],
                                           answers[item.question_id], lang)
            reply, error = ask(client, call_cfg, messages)
            if reply is None:
                return {"category": item.category, "status": "failed", "scores": None, "error": error, "reply": None}
            scores = parse_review_official(reply) if official else parse_review(reply)
            if scores is None and official:  # the published script records [-1, -1] and averages it in
                return {"category": item.category, "status": "ok", "parsed": False, "scores": [-1.0, -1.0],
                        "error": "unparsed reply: scored [-1, -1] as the published script does", "reply": reply}
            if scores is None:
                return {"category": item.category, "status": "failed", "scores": None, "reply": reply,
                        "error": "unparseable reply: first line is not two scores in 0..10"}
            return {"category": item.category, "status": "ok", "parsed": True, "scores": list(scores),
                    "error": None, "reply": reply}
        return run

    identity = {"judge_model": cfg.model, "prompt_version": version}
    digests = {it.question_id: _digest(answers[it.question_id]) for it in items}
    rows = _run_judgements({it.question_id: task(it) for it in items}, digests, out_path, identity,
                           cfg.concurrency)
    if official:
        return summarise_review_official(list(rows.values()), cfg.model)
    return summarise_review(list(rows.values()), cfg.model, version)


def summarise_review_official(rows: list[dict], judge_model: str) -> dict:
    """summarize_gpt_review.py's arithmetic: per category and `all`, the mean (reference, candidate)
    pair with unparsed replies as (-1, -1), each mean rounded to 3 decimals, relative score
    = candidate / reference x 100 rounded to 1 decimal; scores x10 as it prints them."""
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    failed: Counter[str] = Counter()
    unparsed: Counter[str] = Counter()
    for row in rows:
        own = row.get("category") or "all"
        for category in ("all", own) if own != "all" else ("all",):
            if row["status"] != "ok":
                failed[category] += 1
                continue
            pairs[category].append((float(row["scores"][0]), float(row["scores"][1])))
            unparsed[category] += row.get("parsed") is False
    per_category = {}
    for category in sorted(set(pairs) | set(failed)):
        got = pairs.get(category, [])
        ref = round(sum(p[0] for p in got) / len(got), 3) if got else None
        cand = round(sum(p[1] for p in got) / len(got), 3) if got else None
        per_category[category] = {
            "judged": len(got), "failed": failed[category], "unparsed": unparsed[category],
            "reference_x10": round(ref * 10, 1) if ref is not None else None,
            "candidate_x10": round(cand * 10, 1) if cand is not None else None,
            "relative": round(cand / ref * 100, 1) if got and ref else None,
        }
    overall = per_category.get("all", {"judged": 0, "failed": 0, "unparsed": 0, "relative": None})
    return {
        "benchmark": "llava_bench",
        "mode": "official",
        "protocol": OFFICIAL_REVIEW_PROTOCOL + f"; judge {judge_model}; prompt {OFFICIAL_REVIEW_VERSION}",
        "metric": "relative score",
        "judge_model": judge_model,
        "prompt_version": OFFICIAL_REVIEW_VERSION,
        "n": overall["judged"],
        "failed": overall["failed"],
        "unparsed": overall["unparsed"],
        "score": overall["relative"] / 100 if overall["relative"] is not None else None,
        "per_category": per_category,
        "per_type": {c: (v["relative"] / 100 if v["relative"] is not None else None)
                     for c, v in per_category.items() if c != "all"},
    }


def summarise_review(rows: list[dict], judge_model: str, prompt_version: str) -> dict:
    ok: dict[str, list[tuple[float, float]]] = defaultdict(list)
    failed: Counter[str] = Counter()
    for row in rows:
        own = row.get("category") or "all"
        for category in ("all", own) if own != "all" else ("all",):
            if row["status"] == "ok":
                ok[category].append(tuple(row["scores"]))
            else:
                failed[category] += 1
    per_category = {}
    for category in sorted(set(ok) | set(failed)):
        pairs = ok.get(category, [])
        ref = sum(p[0] for p in pairs) / len(pairs) if pairs else None
        cand = sum(p[1] for p in pairs) / len(pairs) if pairs else None
        per_category[category] = {
            "judged": len(pairs), "failed": failed[category],
            "reference_x10": ref * 10 if ref is not None else None,
            "candidate_x10": cand * 10 if cand is not None else None,
            "relative": cand / ref * 100 if pairs and ref else None,
        }
    overall = per_category.get("all", {"judged": 0, "failed": 0, "relative": None})
    return {
        "benchmark": "llava_bench",
        "mode": "extended",
        "protocol": REVIEW_PROTOCOL + f"; judge {judge_model}; prompt {prompt_version}",
        "metric": "relative score",
        "judge_model": judge_model,
        "prompt_version": prompt_version,
        "n": overall["judged"],
        "failed": overall["failed"],
        "score": overall["relative"] / 100 if overall["relative"] is not None else None,
        "per_category": per_category,
        "per_type": {c: (v["relative"] / 100 if v["relative"] is not None else None)
                     for c, v in per_category.items() if c != "all"},
    }


# ---------------------------------------------------------------- pairwise preference

_FROM_CANDIDATE = {("ab", "A"): "win", ("ab", "B"): "lose", ("ba", "A"): "lose", ("ba", "B"): "win"}


def combine_orders(first: str, second: str) -> str:
    """Per-order verdicts ('A'/'B'/'tie', with the candidate as A in the first order and as B in the
    second) -> the candidate's 'win', 'tie' or 'lose'. A win or loss needs both orders to agree."""
    a = _FROM_CANDIDATE.get(("ab", first), "tie")
    b = _FROM_CANDIDATE.get(("ba", second), "tie")
    return a if a == b else "tie"


def pairwise(items: Sequence[EvalItem], candidate: dict[str, str], opponent: dict[str, str], client: OpenAI,
             cfg: JudgeConfig, out_path: Path, lang: str) -> dict:
    """Candidate vs opponent on every item, both orders; returns win/tie/lose counts and rates."""

    def task(item: EvalItem) -> Callable[[], dict]:
        def run() -> dict:
            url = image_data_url(item.image)
            verdicts, errors, replies = [], [], []
            for a, b in ((candidate, opponent), (opponent, candidate)):
                reply, error = ask(client, cfg, pairwise_messages(url, item.question, a[item.question_id],
                                                                  b[item.question_id], lang))
                verdict = parse_pairwise(reply) if reply is not None else None
                if reply is not None and verdict is None:
                    error = "unparseable reply: no verdict sentence"
                verdicts.append(verdict)
                errors.append(error)
                replies.append(reply)
            ok = all(v is not None for v in verdicts)
            return {"status": "ok" if ok else "failed", "verdicts": verdicts, "errors": errors,
                    "replies": replies,
                    "outcome": combine_orders(verdicts[0], verdicts[1]) if ok else None}
        return run

    identity = {"judge_model": cfg.model, "prompt_version": PAIRWISE_VERSION}
    digests = {it.question_id: _digest(candidate[it.question_id], opponent[it.question_id]) for it in items}
    rows = _run_judgements({it.question_id: task(it) for it in items}, digests, out_path, identity,
                           cfg.concurrency)
    return summarise_pairwise(list(rows.values()), cfg.model)


def summarise_pairwise(rows: list[dict], judge_model: str) -> dict:
    outcomes = Counter(r["outcome"] for r in rows if r["status"] == "ok")
    judged = sum(outcomes.values())
    agree = sum(1 for r in rows if r["status"] == "ok"
                and _FROM_CANDIDATE.get(("ab", r["verdicts"][0]), "tie")
                == _FROM_CANDIDATE.get(("ba", r["verdicts"][1]), "tie"))
    return {
        "protocol": PAIRWISE_PROTOCOL + f"; judge {judge_model}; prompt {PAIRWISE_VERSION}",
        "judge_model": judge_model,
        "prompt_version": PAIRWISE_VERSION,
        "judged": judged,
        "failed": sum(1 for r in rows if r["status"] != "ok"),
        "win": outcomes["win"], "tie": outcomes["tie"], "lose": outcomes["lose"],
        "rates": {k: outcomes[k] / judged if judged else None for k in ("win", "tie", "lose")},
        "order_agreement": agree / judged if judged else None,
    }
