"""How well a tokenizer covers a language, and whether an expansion is sound.

Per language, on held-out text:
- tokens per character (whitespace excluded) and per word (whitespace-separated: the eojeol
  for Korean), and per script character (Hangul syllable, Han character) for ko/zh;
- byte-fallback share: tokens that stand for part of a character (SentencePiece `<0xNN>`
  pieces; for byte-level BPE, tokens whose bytes are not whole UTF-8 characters);
- continued-word rate: share of words split into two or more tokens (Rust et al., ACL 2021);
- round-trip exactness: share of texts with decode(encode(x)) == x.
For the expansion itself: unreachable added tokens (never produced whole), and round trips on
whitespace-heavy and mixed edge cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from tokenizers import Tokenizer

from xllava.vocab.bytelevel import Added, from_bytelevel

SCRIPT_CHARS = {"ko": r"[\uac00-\ud7a3]", "zh": r"[\u3400-\u4dbf\u4e00-\u9fff]"}
_WORD = re.compile(r"\S+")
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")

# decode(encode(x)) must give x back for every one of these
EDGE_CASES = [
    "안녕하세요, 오늘은 날씨가 좋네요.",
    "선택한 셀 범위에서 자동 필터 버튼을 숨깁니다.",
    "The quick brown fox jumps over the lazy dog.",
    "隐藏选中单元格区域中的「自动筛选」按钮。",
    "LibreOffice Calc에서 Ctrl+F를 누르면 찾기 도구 모음(查找工具栏)이 열립니다 (v7.4).",
    " 앞에 공백",
    "뒤에 공백 ",
    "   세 칸 공백으로 시작",
    "공백이    여러    칸",
    "줄\n바꿈\n\n두 번",
    "\t탭\t구분\t값\t",
    "이모지 🦙👍🏽 그리고 ㅋㅋㅋ ㅠㅠ",
    " \n ",
    "  mixed 한국어 and English  ",
    "한국어\r\nCRLF 줄",
    "ｆｕｌｌｗｉｄｔｈ ① 가나다",
]


def partial_token_mask(tok: Tokenizer, bytelevel: bool) -> list[bool]:
    """For every id: does the token stand for part of a character (a byte fallback)?"""
    size = tok.get_vocab_size(with_added_tokens=True)
    mask = [False] * size
    for token, i in tok.get_vocab(with_added_tokens=True).items():
        if i < size:
            mask[i] = from_bytelevel(token) is None if bytelevel else bool(_BYTE_PIECE.fullmatch(token))
    return mask


def measure(tok: Tokenizer, texts: Sequence[str], lang: str, bytelevel: bool,
            partial: list[bool] | None = None) -> dict:
    """Coverage figures of one tokenizer on one language's texts (special tokens excluded);
    `partial` is partial_token_mask(tok, bytelevel) when the caller has it already."""
    encodings = tok.encode_batch(list(texts), add_special_tokens=False)
    partial = partial if partial is not None else partial_token_mask(tok, bytelevel)
    n_tokens = n_partial = n_words = n_continued = n_chars = n_exact = 0
    script = re.compile(SCRIPT_CHARS[lang]) if lang in SCRIPT_CHARS else None
    n_script = 0
    for text, enc in zip(texts, encodings, strict=True):
        n_tokens += len(enc.ids)
        n_partial += sum(partial[i] for i in enc.ids if i < len(partial))
        n_chars += sum(not c.isspace() for c in text)
        if script:
            n_script += len(script.findall(text))
        spans = enc.offsets
        j = 0
        for w in _WORD.finditer(text):
            ws, we = w.span()
            while j < len(spans) and spans[j][1] <= ws:  # tokens that end before this word
                j += 1
            k, inside = j, 0
            while k < len(spans) and spans[k][0] < we:
                if spans[k][1] > ws:
                    inside += 1
                k += 1
            n_words += 1
            n_continued += inside >= 2
        n_exact += tok.decode(enc.ids, skip_special_tokens=True) == text
    out = {
        "texts": len(texts),
        "tokens": n_tokens,
        "tokens_per_char": n_tokens / max(n_chars, 1),
        "tokens_per_word": n_tokens / max(n_words, 1),
        "byte_fallback_share": n_partial / max(n_tokens, 1),
        "continued_word_rate": n_continued / max(n_words, 1),
        "roundtrip_exact": n_exact / max(len(texts), 1),
    }
    if script:
        out["tokens_per_script_char"] = n_tokens / max(n_script, 1)
    return out


def unreachable(tok: Tokenizer, added: Sequence[Added], bytelevel: bool) -> list[Added]:
    """Added tokens that encoding never yields whole.

    A token that stands for whole characters must come out as itself when its text is encoded
    through the full pipeline (normaliser, pre-tokenizer, model). SentencePiece-style pieces
    that no text normalises to (inside a word, where the normaliser prepends "▁") and byte-level
    tokens holding part of a character are not text on their own; for them the model must build
    the token from its own symbols."""
    dead = []
    for a in added:
        if bytelevel and a.text is not None:
            ok = tok.encode(a.text, add_special_tokens=False).ids == [a.id]
        elif not bytelevel and (text := _text_normalized_to(tok, a.token)) is not None:
            ok = tok.encode(text, add_special_tokens=False).ids == [a.id]
        else:
            ok = [t.id for t in tok.model.tokenize(a.token)] == [a.id]
        if not ok:
            dead.append(a)
    return dead


def _text_normalized_to(tok: Tokenizer, token: str) -> str | None:
    """The text the normaliser turns into a SentencePiece-style token: with "▁" as spaces, or without
    the leading "▁" where the normaliser prepends one (Llama-2, Mistral); None if neither."""
    spaced = token.replace("▁", " ")
    for text in (spaced, spaced[1:] if spaced.startswith(" ") else None):
        if text and (tok.normalizer.normalize_str(text) if tok.normalizer else text) == token:
            return text
    return None


def roundtrip_failures(encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
                       cases: Sequence[str] = EDGE_CASES) -> list[str]:
    """The cases where decode(encode(x)) != x."""
    return [x for x in cases if decode(encode(x)) != x]
