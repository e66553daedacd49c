"""What a teacher sent back, read defensively: its answer text, its usage, or a reason naming what came.

An OpenAI-compatible endpoint (or a proxy in front of one) may answer 200 with an HTML error page,
a JSON body without choices, a message without content, a megabyte of text, or usage that is
missing, negative or absurd. Each is told apart here, so that a failure reason says what came back
(`not_json: an HTML page ...`, `no_choices: ...`) rather than a generic parse error, and so that the
cost budget never trusts usage it cannot believe:

- missing usage is estimated by counting locally (the prompt estimate the request was paced with,
  and the answer's UTF-8 bytes / 3: about one token per Korean or Chinese character, and a third more
  than English needs), and flagged so the run's summary warns that its cost is partly estimated;
- negative, non-integer or absurd usage (far beyond what the request could have cost) is an error.
"""

from __future__ import annotations

from dataclasses import dataclass


class BadReply(ValueError):
    """The reply is unusable; `kind` is the attempt's error class, the message says what came back."""

    def __init__(self, kind: str, detail: str):
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


@dataclass
class Reply:
    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool


def local_tokens(text: str | None) -> int:
    """A local, deliberately generous token count of a text (see the module docstring)."""
    return 0 if not text else len(text.encode("utf-8")) // 3 + 1


def _snippet(text: str, n: int = 80) -> str:
    return repr(" ".join(text[:n].split()))


def describe(body: object) -> str:
    """A few words on a body that is not a chat completion."""
    if isinstance(body, str):
        head = body.lstrip()[:200].lower()
        kind = "an HTML page" if head.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in head \
            else "plain text" if body.strip() else "an empty body"
        return f"{kind} ({len(body)} characters: {_snippet(body)})"
    if isinstance(body, dict):
        return f"a JSON object with keys {sorted(body)[:8]}"
    return f"a JSON {type(body).__name__}"


def _count(usage: dict, name: str) -> int:
    value = usage.get(name)
    if value is None:
        return -1  # absent: estimated by the caller
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadReply("bad_usage", f"usage.{name} is {value!r}, not a whole number")
    if value < 0:
        raise BadReply("bad_usage", f"usage.{name} is {value}, a negative count")
    return value


def read_reply(body: object, prompt_estimate: int, max_tokens: int, max_answer_chars: int) -> Reply:
    """The answer text and usage of a chat-completion body (a dict), or BadReply."""
    if not isinstance(body, dict):
        raise BadReply("not_json", f"the reply is {describe(body)}")
    if "error" in body and "choices" not in body:
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise BadReply("error_body", f"the reply is an error object: {_snippet(str(message), 200)}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadReply("no_choices", f"the reply has no choices ({describe(body)})")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise BadReply("no_content", f"the reply's message content is a {type(content).__name__}, not text")
    if content is not None and len(content) > max_answer_chars:
        raise BadReply("too_large", f"the answer is {len(content)} characters, more than max_answer_chars="
                                    f"{max_answer_chars}")
    finish = choice.get("finish_reason")
    usage = body.get("usage")
    estimated = not isinstance(usage, dict)
    prompt = completion = -1
    if not estimated:
        prompt, completion = _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")
        estimated = prompt < 0 or completion < 0
    if prompt < 0:
        prompt = prompt_estimate
    if completion < 0:
        completion = local_tokens(content)
    # absurd: more than the request could have cost (prompt estimates err by far less than 50x;
    # reasoning models may count hidden tokens beyond max_tokens, but not 10x)
    if prompt > 50 * prompt_estimate + 100_000 or completion > 10 * max_tokens + 10_000:
        raise BadReply("bad_usage", f"usage of {prompt} prompt and {completion} completion tokens is beyond what "
                                    f"this request could cost (about {prompt_estimate} and at most {max_tokens})")
    return Reply(content, finish, prompt, completion, estimated)
