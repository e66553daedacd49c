"""Judge prompts and the parsers of their replies, versioned: every score records the version.

LLaVA-Bench review follows the published layout (context, question, the reference as Assistant 1,
the candidate as Assistant 2, then the rule; first line "score1 score2"); the Korean rule adds a
Korean-fluency criterion and Korean section labels, as K-LLaVA-W does. The wording is ours.
The official mode uses LLaVA-1.5's published system message and rule text verbatim (they are protocol
inputs, kept in protocols/llava_bench_review.yaml with their source) and its score parsing.
Pairwise preference follows X-LLaVA section 6 (LIMA's protocol): the judge sees the image, the
question and answers A and B, and says A is better, B is better, or both are similar.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REVIEW_VERSION = {"en": "llava-bench-review/xllava-v1", "ko": "llava-bench-review-ko/xllava-v1"}
PAIRWISE_VERSION = "pairwise-preference/xllava-v1"

_REVIEW_SYSTEM = {
    "en": "You are a careful assistant who checks the quality of answers precisely.",
    "ko": "당신은 답변의 품질을 꼼꼼하고 정확하게 확인하는 도우미입니다.",
}
_REVIEW_RULE = {
    "en": (
        "Please give feedback on the answers of the two AI assistants to the question above. You do not "
        "see the image; the context describes it. Rate each answer for helpfulness, relevance, accuracy "
        "and level of detail with a score from 1 to 10, higher meaning better. On the first line write "
        "only the two scores, Assistant 1's then Assistant 2's, separated by a space. From the second line "
        "on, explain the rating briefly, judging the content and not the order of the answers."
    ),
    "ko": (
        "위 질문에 대한 두 AI 어시스턴트의 답변을 평가해 주세요. 이미지는 보이지 않으며, 설명이 이미지를 "
        "대신합니다. 각 답변의 유용성, 관련성, 정확성, 세부 수준, 한국어 생성 능력을 보고 1점부터 10점까지 "
        "점수를 매기세요(높을수록 좋음). 첫 줄에는 어시스턴트 1과 어시스턴트 2의 점수 두 개만 공백으로 "
        "구분하여 쓰세요. 둘째 줄부터 평가 이유를 간단히 설명하되, 답변의 순서가 아닌 내용으로 판단하세요."
    ),
}
_REVIEW_LABELS = {
    "en": ("Context", "Question", "Assistant {n}", "End of Assistant {n}", "System"),
    "ko": ("설명", "질문", "어시스턴트 {n}", "어시스턴트 {n} 끝", "시스템"),
}

_LANGUAGE_NAMES = {"en": "English", "ko": "Korean", "zh": "Chinese"}
PAIRWISE_SYSTEM = "You compare two answers to a question about an image, fairly and precisely."
VERDICTS = {"Answer A is better": "A", "Answer B is better": "B", "Both answers are similar": "tie"}


def review_messages(context: str, question: str, reference: str, answer: str, lang: str) -> list[dict]:
    lang = lang if lang in _REVIEW_RULE else "en"
    ctx, q, assistant, end, system = _REVIEW_LABELS[lang]
    text = (
        f"[{ctx}]\n{context}\n\n[{q}]\n{question}\n\n"
        f"[{assistant.format(n=1)}]\n{reference}\n\n[{end.format(n=1)}]\n\n"
        f"[{assistant.format(n=2)}]\n{answer}\n\n[{end.format(n=2)}]\n\n"
        f"[{system}]\n{_REVIEW_RULE[lang]}\n\n"
    )
    return [{"role": "system", "content": _REVIEW_SYSTEM[lang]}, {"role": "user", "content": text}]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_review(reply: str) -> tuple[float, float] | None:
    """(reference score, candidate score) from the first non-empty line, or None: a reply that does
    not start with exactly two scores in 0..10 is a failed judgement, never a score."""
    first = next((line for line in reply.splitlines() if line.strip()), "")
    tokens = first.replace(",", " ").split()
    if len(tokens) != 2 or not all(_NUMBER.fullmatch(t) for t in tokens):
        return None
    a, b = float(tokens[0]), float(tokens[1])
    if not (0 <= a <= 10 and 0 <= b <= 10):
        return None
    return a, b


def pairwise_text(question: str, answer_a: str, answer_b: str, lang: str) -> str:
    language = _LANGUAGE_NAMES.get(lang, lang)
    choices = ", ".join(f"'{v}'" for v in VERDICTS)
    return (
        "Look at the image, then read the question and the two answers.\n\n"
        f"[Question]\n{question}\n\n[Answer A]\n{answer_a}\n[End of Answer A]\n\n"
        f"[Answer B]\n{answer_b}\n[End of Answer B]\n\n"
        "Which answer is better? Consider whether it is correct about the image, whether it helps, and, "
        f"since the question is in {language}, whether it is written in {language}. Reply with exactly one "
        f"of {choices} on the first line; you may give a short reason on the next line."
    )


def pairwise_messages(image_url: str, question: str, answer_a: str, answer_b: str, lang: str) -> list[dict]:
    return [
        {"role": "system", "content": PAIRWISE_SYSTEM},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": pairwise_text(question, answer_a, answer_b, lang)},
        ]},
    ]


_VERDICT = re.compile("|".join(re.escape(v) for v in VERDICTS), re.IGNORECASE)


def parse_pairwise(reply: str) -> str | None:
    """'A', 'B' or 'tie' from the first verdict sentence in the reply; None when there is none."""
    match = _VERDICT.search(reply)
    if not match:
        return None
    found = match.group(0).lower()
    return next(v for k, v in VERDICTS.items() if k.lower() == found)


# ---------------------------------------------------------------- LLaVA-Bench review, official mode

OFFICIAL_REVIEW = yaml.safe_load((Path(__file__).parent / "protocols" / "llava_bench_review.yaml").read_text("utf-8"))
OFFICIAL_REVIEW_VERSION: str = OFFICIAL_REVIEW["version"]


def official_review_messages(context: str, question: str, reference: str, answer: str,
                             variant: str = "in_the_wild") -> list[dict]:
    """The published review request: LLaVA-1.5's system message, and the context, question, the
    reference as Assistant 1, the candidate as Assistant 2 and the rule of the benchmark variant
    (in_the_wild or coco), in the published layout."""
    role, rule = OFFICIAL_REVIEW["role"], OFFICIAL_REVIEW["rules"][variant]
    text = (
        f"[Context]\n{context}\n\n[Question]\n{question}\n\n"
        f"[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule}\n\n"
    )
    return [{"role": "system", "content": OFFICIAL_REVIEW["system"]}, {"role": "user", "content": text}]


def parse_review_official(reply: str) -> tuple[float, float] | None:
    """The published parsing: the first line, commas made spaces, split on single spaces; exactly two
    pieces that read as numbers are the scores ("8 7." is 8 and 7; "8, 7" splits into three pieces and
    fails). None where the published script records [-1, -1]."""
    pieces = reply.split("\n")[0].replace(",", " ").split(" ")
    if len(pieces) != 2:
        return None
    try:
        return float(pieces[0]), float(pieces[1])
    except ValueError:
        return None
