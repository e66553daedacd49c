"""Submission files for splits whose answers are held by an evaluation server.

- VQAv2 (EvalAI): a JSON array [{question_id, answer}], each answer through EvalAI's answer processor
  as LLaVA-1.5 submits it; with `submission_questions` (the full test2015 question file) every
  question of the test set is listed, those not asked with an empty answer, because the test-dev
  phase takes a file covering all of test2015.
- GQA: [{questionId, prediction}], the prediction with trailing periods stripped and lower-cased
  (LLaVA-1.5's conversion), the file the official eval.py and the server take.
- MMBench: a spreadsheet with index, question, the option columns, prediction (the model's raw
  answer) and answer where known, as LLaVA-1.5 uploads it: .xlsx through openpyxl when installed
  (`pip install xllava[eval-submit]`), otherwise the same table as .tsv, with a note saying so.
- any other format: [{question_id, text}].
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from xllava.eval.items import BenchmarkFormatError, EvalItem
from xllava.eval.scorers import gqa_prediction
from xllava.eval.suite_config import BenchmarkSpec
from xllava.eval.vqa_eval import process_prediction


def _qid(item: EvalItem) -> int | str:
    return int(item.question_id) if item.question_id.isdigit() else item.question_id


def _all_question_ids(path: Path) -> list[int | str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise BenchmarkFormatError(path, None, "questions", "expected a VQAv2 question file")
    ids = []
    for i, q in enumerate(data["questions"]):
        if not isinstance(q, dict) or not isinstance(q.get("question_id"), (int, str)):
            raise BenchmarkFormatError(path, f"questions[{i}]", "question_id", "missing")
        ids.append(q["question_id"])
    return ids


def mmbench_table(items: list[EvalItem], answers: dict[str, str]) -> tuple[list[str], list[list]]:
    letters = sorted({c for it in items for c in it.extra.get("options", {})})
    has_answer = any(it.answers for it in items)
    header = ["index", "question", *letters, "prediction"] + (["answer"] if has_answer else [])
    rows = []
    for it in items:
        options = it.extra.get("options", {})
        row = [int(it.question_id), it.question, *(options.get(c, "") for c in letters), answers[it.question_id]]
        rows.append(row + ([it.answers[0] if it.answers else ""] if has_answer else []))
    return header, rows


def write_mmbench(path: Path, header: list[str], rows: list[list]) -> tuple[Path, str]:
    """(file written, note): .xlsx when openpyxl is installed, else .tsv."""
    try:
        from openpyxl import Workbook
    except ImportError:
        out = path.with_suffix(".tsv")
        with out.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(header)
            writer.writerows(rows)
        return out, ("openpyxl is not installed (pip install 'xllava[eval-submit]'), so the table is a TSV: "
                     "open it in a spreadsheet and save it as .xlsx for the MMBench server")
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = path.with_suffix(".xlsx")
    book.save(out)
    return out, "the MMBench server's spreadsheet"


def write_submission(spec: BenchmarkSpec, lang: str, items: list[EvalItem], answers: dict[str, str],
                     out_dir: Path, run_dir: Path | None = None) -> dict:
    """Write the server's file for a split without gold answers; returns the score entry naming it."""
    folder = out_dir / "submissions"
    folder.mkdir(parents=True, exist_ok=True)
    note = ""
    if spec.format == "mmbench":
        path, note = write_mmbench(folder / f"{spec.key}_{lang}", *mmbench_table(items, answers))
    else:
        if spec.format == "vqav2":
            rows: list[dict] = [{"question_id": _qid(it), "answer": process_prediction(answers[it.question_id])}
                                for it in items]
            if spec.submission_questions:
                full = Path(spec.submission_questions)
                full = full if full.is_absolute() or run_dir is None else run_dir / full
                asked = {row["question_id"] for row in rows}
                rows += [{"question_id": q, "answer": ""} for q in _all_question_ids(full) if q not in asked]
            else:
                note = ("only the questions asked are listed; for the test-dev phase set submission_questions to "
                        "the test2015 question file, since EvalAI takes a file covering all of test2015")
        elif spec.format == "gqa":
            rows = [{"questionId": it.question_id, "prediction": gqa_prediction(answers[it.question_id])}
                    for it in items]
        else:
            rows = [{"question_id": it.question_id, "text": answers[it.question_id]} for it in items]
        path = folder / f"{spec.key}_{lang}.json"
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    server = {"vqav2": "EvalAI (VQA challenge)", "gqa": "the GQA evaluation server or eval.py",
              "mmbench": "the MMBench evaluation server"}.get(spec.format, "the benchmark's server")
    return {"score": None, "n": len(items), "metric": "submission", "submission": str(path),
            "protocol": f"no gold answers in the files: predictions written to {path} for {server}"
            + (f"; {note}" if note else "")}
