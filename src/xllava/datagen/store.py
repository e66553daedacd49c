"""The append-only JSONL store: one line per finished request, keyed by what made it.

A key hashes the image's bytes, the task, the languages, the prompt version, the model, the endpoint
and the generation parameters, so changing any of them asks again and nothing else does. Each record
is written with one `write` on an O_APPEND descriptor, so a killed process leaves at worst one torn
last line; opening the store cuts that line off (or completes it when it is a whole record missing
only its newline). A torn line anywhere else is damage from outside and an error naming the line.
An exclusive `flock` keeps a second generator off the same store; the kernel drops it when the
process dies, even by kill -9. When one key has several records (`retry_failed` appends a new one),
the last one counts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

FINISHED = ("ok", "rejected", "failed")


class StoreError(RuntimeError):
    pass


def public_endpoint(base_url: str) -> str:
    """The base URL without credentials, query or fragment: what may be stored and logged."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def request_key(image_sha256: str, task: str, languages: list[str], prompt_version: str,
                model: str, endpoint: str, params: dict) -> str:
    payload = {
        "image": image_sha256, "task": task, "languages": list(languages), "prompt_version": prompt_version,
        "model": model, "endpoint": endpoint, "params": params,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _parse_lines(path: Path, data: bytes) -> list[dict]:
    records = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise StoreError(f"{path}: line {number}: not a JSON record ({err.msg})") from err
        if not isinstance(record, dict) or not isinstance(record.get("key"), str):
            raise StoreError(f"{path}: line {number}: field 'key' missing")
        if record.get("status") not in FINISHED:
            raise StoreError(f"{path}: line {number}: field 'status' must be one of {FINISHED}")
        records.append(record)
    return records


def _split_torn_tail(data: bytes) -> tuple[bytes, bytes]:
    """(complete lines, trailing bytes after the last newline)."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def read_records(path: Path) -> list[dict]:
    """Every complete record in file order (a torn last line is ignored), without locking."""
    path = Path(path)
    if not path.exists():
        return []
    complete, _ = _split_torn_tail(path.read_bytes())
    return _parse_lines(path, complete)


def latest(records: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for record in records:
        out[record["key"]] = record
    return out


class Store:
    """Open for appending under an exclusive lock; `records` maps each key to its latest record."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(self._fd)
            raise StoreError(f"{self.path} is in use by another generator process") from err
        self.repaired = self._repair()
        every = read_records(self.path)
        self.records = latest(every)
        # all that was ever paid, superseded records included (the budget counts the whole store)
        # (a negative cost, which a store written before usage was checked may hold, counts as none:
        # it would lower the total and let the budget be overspent)
        self.spent_usd = sum(max(0.0, float(r.get("cost_usd") or 0.0)) for r in every)

    def _repair(self) -> str | None:
        data = self.path.read_bytes()
        complete, tail = _split_torn_tail(data)
        if not tail.strip():
            return None
        try:  # a whole record that only lost its newline is kept
            _parse_lines(self.path, tail)
            os.write(self._fd, b"\n")
            return "completed the last line"
        except StoreError:
            os.ftruncate(self._fd, len(complete))
            return f"dropped a torn last line of {len(tail)} bytes"

    def append(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(line)
        while view:  # one write in practice; the loop only covers a short write
            written = os.write(self._fd, view)
            view = view[written:]
        self.records[record["key"]] = record
        self.spent_usd += max(0.0, float(record.get("cost_usd") or 0.0))

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
