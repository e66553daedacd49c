"""How much Korean each family's real tokenizer needs: Korean tokens per Hangul syllable on the
held-out LibreOffice paragraphs before and after expansion, with the piece budget growing, and
whether English and Chinese stay exactly as they were.

    python tools/fetch_tokenizers.py && python bench/vocab_families.py [--budgets 1000 2000 4000 8000]

The Korean pieces are learned once (the vocab stage's default: SentencePiece BPE, 8000, on the
train split), then spliced into each tokenizer with `--budgets` pieces at most; "needed" is the
smallest budget that gets 90% of the full expansion's cut in tokens per syllable. A tokenizer
that already spends at most one token per syllable covers Korean: expanding it is an efficiency
choice (and new rows need continued pretraining), not a necessity, and the table says so.
"""

from __future__ import annotations

import argparse
import os
import re
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tokenizers import Tokenizer  # noqa: E402

from xllava.corpus import sample  # noqa: E402
from xllava.vocab.config import SCRIPTS, VocabConfig  # noqa: E402
from xllava.vocab.expand import expand_tokenizer, tokenizer_family  # noqa: E402
from xllava.vocab.learn import filter_pieces, learn_spm, pieces_of_model  # noqa: E402
from xllava.vocab.llama2 import llama2_tokenizer_dir  # noqa: E402
from xllava.vocab.metrics import partial_token_mask  # noqa: E402
from xllava.vocab.npm_tokenizers import tokenizer_dir  # noqa: E402

HANGUL = re.compile(r"[\uac00-\ud7a3]")
TOKENIZERS = ["llama2", "mistral", "llama3", "qwen3", "deepseek_v3", "gemma3"]


def ko_cost(tok: Tokenizer, texts: list[str], partial: list[bool]) -> tuple[float, float, bool]:
    """Tokens per Hangul syllable, byte-fallback share, and whether every text round-trips."""
    enc = tok.encode_batch(texts, add_special_tokens=False)
    n = sum(len(e.ids) for e in enc)
    fallback = sum(partial[i] for e in enc for i in e.ids)
    exact = all(tok.decode(e.ids) == t for e, t in zip(enc, texts, strict=True))
    return n / sum(len(HANGUL.findall(t)) for t in texts), fallback / n, exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--tokenizers", nargs="+", default=TOKENIZERS)
    args = parser.parse_args()
    cfg = VocabConfig()
    started = time.time()
    pieces = filter_pieces(pieces_of_model(learn_spm(sample.texts("ko", "train"), cfg.n_pieces)), SCRIPTS["ko"])
    held = {lang: sample.texts(lang, "heldout", limit=cfg.eval_limit) for lang in ("ko", "en", "zh")}
    syllables = sum(len(HANGUL.findall(t)) for t in held["ko"])
    print(f"{len(pieces)} Korean pieces learned; held-out: {len(held['ko'])} ko paragraphs ({syllables} syllables), "
          f"{len(held['en'])} en, {len(held['zh'])} zh")
    print("| tokenizer | kind | ko tokens/syllable before | partial-character tokens | "
          + " | ".join(f"after {b} (added)" for b in args.budgets) + " | needed | en, zh unchanged | verdict |")
    for key in args.tokenizers:
        path = llama2_tokenizer_dir() if key == "llama2" else tokenizer_dir(key)
        base = Tokenizer.from_file(str(path / "tokenizer.json"))
        kind = tokenizer_family(path)
        before, fallback, _ = ko_cost(base, held["ko"], partial_token_mask(base, kind == "bytelevel"))
        afters, unchanged = [], True
        for budget in args.budgets:
            exp = expand_tokenizer(path, pieces, budget, SCRIPTS["ko"])
            tok = exp.tokenizer
            after, _, exact = ko_cost(tok, held["ko"], partial_token_mask(tok, exp.bytelevel))
            if not exact:
                raise SystemExit(f"{key}: Korean held-out text does not round-trip after {budget} pieces")
            for lang in ("en", "zh"):
                unchanged &= [e.ids for e in tok.encode_batch(held[lang])] == [e.ids for e in base.encode_batch(held[lang])]
            afters.append((after, len(exp.added)))
        full_cut = before - afters[-1][0]
        needed = next(b for b, (a, _) in zip(args.budgets, afters, strict=True) if before - a >= 0.9 * full_cut)
        cells = " | ".join(f"{a:.3f} ({n})" for a, n in afters)
        verdict = ("covers Korean already (<= 1 token/syllable); expansion optional" if before <= 1.0
                   else f"expand: {before / afters[-1][0]:.1f}x fewer Korean tokens")
        print(f"| {key} | {kind} | {before:.3f} | {fallback:.1%} | {cells} | {needed} | {'yes' if unchanged else 'NO'} "
              f"| {verdict} |", flush=True)
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
