"""Keys stay out of URLs and logs.

A key in a query string lands in access logs, proxy logs and browser history; clients that send one
are refused (400) and told to use the Authorization header. The access log is written by uvicorn
from the full request target, so a filter rewrites its path to drop the query string for every
request, refused or not.
"""

from __future__ import annotations

import logging

from fastapi import Request

from xllava.serve.errors import ApiError

# query parameter names clients and proxies use for keys (compared in lower case, '-' as '_')
KEY_PARAMS = frozenset({"api_key", "apikey", "key", "token", "access_token", "auth", "authorization", "bearer"})


def refuse_query_keys(request: Request) -> None:
    for name in request.query_params:
        if name.lower().replace("-", "_") in KEY_PARAMS:
            raise ApiError(400, f"API keys are not accepted in the URL (query parameter {name!r}); send the header "
                           "'Authorization: Bearer <key>'", name, "key_in_query")


def strip_query(target: str) -> str:
    path, sep, _ = target.partition("?")
    return path + ("?<redacted>" if sep else "")


class _NoQueryString(logging.Filter):
    """Drops the query string from uvicorn's access-log records (args: client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], strip_query(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _NoQueryString) for f in logger.filters):
        logger.addFilter(_NoQueryString())
