"""The teacher's output format: one JSON schema per (task, languages), and its validation.

Every answer holds `conversations`, each a list of `turns`, each turn a `question` and an `answer`
with one string per target language, so the languages of an item say the same thing and stay linked.
The location type first lists the scene graph (`scene_graph`: subject, predicate, object), because
the paper's teacher wrote the scene graph before the questions; the property order of the schema is
the order a strict decoder writes in.

The schema is built with pydantic, so the same class gives the `response_format` schema (strict:
every object closed, every property required, no keywords OpenAI's strict mode rejects) and the
validation of answers from endpoints that only offer JSON mode.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class Triple(_Closed):
    subject: str
    predicate: str
    object: str


class InvalidAnswer(ValueError):
    """The teacher's content is not JSON or does not follow the schema (the message says where)."""

    def __init__(self, kind: str, detail: str):
        self.kind = kind  # "invalid_json" or "schema"
        super().__init__(f"{kind}: {detail}")


@lru_cache(maxsize=64)
def response_model(task: str, languages: tuple[str, ...]) -> type[BaseModel]:
    # Language codes such as "zh-Hant" are not identifiers: fields get safe names, the codes are aliases.
    text_fields = {f"l{i}": (str, Field(alias=lang)) for i, lang in enumerate(languages)}
    text = create_model("Text", __base__=_Closed, **text_fields)  # type: ignore[call-overload]
    turn = create_model("Turn", __base__=_Closed, question=(text, ...), answer=(text, ...))
    conversation = create_model("Conversation", __base__=_Closed, turns=(list[turn], ...))
    fields: dict = {}
    if task == "location":
        fields["scene_graph"] = (list[Triple], ...)
    fields["conversations"] = (list[conversation], ...)
    return create_model(f"MvifAnswer_{task}", __base__=_Closed, **fields)


def json_schema(task: str, languages: list[str]) -> dict:
    return response_model(task, tuple(languages)).model_json_schema(by_alias=True)


@lru_cache(maxsize=64)
def _response_format(task: str, languages: tuple[str, ...], version: str) -> str:
    return json.dumps({
        "type": "json_schema",
        "json_schema": {"name": f"mvif_{task}_{version}", "strict": True, "schema": json_schema(task, list(languages))},
    })


def response_format(task: str, languages: list[str], version: str) -> dict:
    """The OpenAI `response_format` for structured output with our schema (a fresh copy each call;
    building the schema is cached, as it costs more than a request)."""
    return json.loads(_response_format(task, tuple(languages), version))


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL)


def parse_answer(content: str | None, task: str, languages: list[str]) -> dict:
    """The teacher's JSON as a plain dict keyed by language codes; InvalidAnswer when it is not."""
    if not content or not content.strip():
        raise InvalidAnswer("invalid_json", "empty content")
    fenced = _FENCE.match(content)  # JSON mode answers sometimes come in a Markdown code block
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidAnswer("invalid_json", f"{err.msg} at line {err.lineno} column {err.colno}") from err
    try:
        parsed = response_model(task, tuple(languages)).model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in err.errors()[:3]
        )
        raise InvalidAnswer("schema", problems) from err
    return parsed.model_dump(by_alias=True)
