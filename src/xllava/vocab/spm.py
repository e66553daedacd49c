"""Splice pieces into a SentencePiece BPE model (Llama-2 style) and its HF `tokenizer.json`.

SentencePiece BPE has no merge list: it repeatedly joins the adjacent pair whose concatenation
is a piece with the highest score. So adding a piece is appending it to the model proto with a
score, and it is reachable only if the pieces it must be joined from appear side by side at
some point. As for byte-level BPE (xllava.vocab.bytelevel), each piece is built constructively:
all its characters become pieces first (a character outside the vocabulary falls back to bytes
and can never be joined), then the piece's current segmentation is computed and, while it has
more than two parts, the prefix of the first two is added as a piece of its own. New pieces
score below every base piece, so base text keeps its tokens (the Chinese-LLaMA merge gave its
pieces score 0, above all, and left 656 of 23,295 added pieces unreachable).

The HF `tokenizer.json` of such a model is a BPE whose merges are every split (a, b) of every
piece with both halves in the vocabulary, ranked by the merged piece's score; that list is
regenerated from the final proto so the fast tokenizer agrees with SentencePiece.
"""

from __future__ import annotations

import json

from sentencepiece import sentencepiece_model_pb2 as pb

from xllava.vocab.bytelevel import Added, SpliceResult

# Scores at or below this are "never merge" sentinels (Meta's Llama-2 gives "▁▁" -1e9).
SENTINEL = -1e6
_MERGEABLE = (pb.ModelProto.SentencePiece.NORMAL, pb.ModelProto.SentencePiece.USER_DEFINED)


class SpmBpe:
    """SentencePiece BPE segmentation of a "▁"-escaped string: highest score first, leftmost on ties."""

    def __init__(self, scores: dict[str, float]):
        self.scores = dict(scores)

    def segment(self, text: str) -> list[str]:
        parts = list(text)
        while len(parts) > 1:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                s = self.scores.get(parts[i] + parts[i + 1])
                if s is not None and (best is None or s > best):
                    best, best_i = s, i
            if best is None:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        return parts


def load_proto(data: bytes) -> pb.ModelProto:
    m = pb.ModelProto()
    m.ParseFromString(data)
    if m.trainer_spec.model_type != pb.TrainerSpec.BPE:
        raise ValueError("only SentencePiece BPE models can be spliced (this one is "
                         f"{pb.TrainerSpec.ModelType.Name(m.trainer_spec.model_type)})")
    return m


def splice_spm(model: bytes, pieces: list[str], max_added: int | None = None) -> tuple[bytes, list[Added], dict]:
    """Append pieces to a SentencePiece BPE proto; returns the new proto, the added pieces, skip counts."""
    m = load_proto(model)
    scores = {p.piece: p.score for p in m.pieces if p.type in _MERGEABLE}
    known = {p.piece for p in m.pieces}
    floor = min((s for s in scores.values() if s > SENTINEL), default=0.0)
    planner = SpmBpe(scores)
    added: list[Added] = []
    skipped = {"already_a_token": 0}

    def add(piece: str, kind: str) -> None:
        score = floor - 1.0 - len(added)
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, pb.ModelProto.SentencePiece.NORMAL
        planner.scores[piece] = score
        known.add(piece)
        added.append(Added(len(m.pieces) - 1, piece, piece.replace("▁", " "), kind))

    n_pieces = 0
    for piece in pieces:
        if max_added is not None and n_pieces >= max_added:
            break
        if piece in known:
            skipped["already_a_token"] += 1
            continue
        for ch in piece:
            if ch not in known:
                add(ch, "piece" if ch == piece else "scaffold")
        seg = planner.segment(piece)
        while len(seg) > 1:
            joined = seg[0] + seg[1]
            if joined in known:  # a piece that never joins (control, byte): this one cannot be built
                skipped["unbuildable"] = skipped.get("unbuildable", 0) + 1
                break
            add(joined, "piece" if joined == piece else "scaffold")
            seg = planner.segment(piece)
        n_pieces += 1
    m.trainer_spec.vocab_size = len(m.pieces)
    return m.SerializeToString(), added, skipped


def hf_vocab_and_merges(model: bytes) -> tuple[dict[str, int], list[list[str]]]:
    """The HF BPE vocabulary and merge list equivalent to a SentencePiece BPE proto."""
    m = load_proto(model)
    vocab = {p.piece: i for i, p in enumerate(m.pieces)}
    mergeable = {p.piece: (p.score, i) for i, p in enumerate(m.pieces) if p.type in _MERGEABLE}
    ranked = []
    for piece, (score, pid) in mergeable.items():
        for cut in range(1, len(piece)):
            a, b = piece[:cut], piece[cut:]
            if a in mergeable and b in mergeable:
                ranked.append((-score, pid, mergeable[a][1], mergeable[b][1], a, b))
    ranked.sort()
    return vocab, [[a, b] for *_, a, b in ranked]


def splice_spm_tokenizer(tok_json: dict, model: bytes, pieces: list[str], max_added: int | None = None
                         ) -> tuple[SpliceResult, bytes]:
    """Splice into the proto, then give the tokenizer.json the proto's vocabulary and merges
    (normaliser, decoder, special tokens stay the base's)."""
    if tok_json.get("model", {}).get("type") != "BPE":
        raise ValueError("the tokenizer.json next to a SentencePiece BPE model must hold a BPE model")
    new_model, added, skipped = splice_spm(model, pieces, max_added)
    vocab, merges = hf_vocab_and_merges(new_model)
    base_vocab = tok_json["model"]["vocab"]
    clash = [p for p, i in base_vocab.items() if vocab.get(p) != i]
    if clash:
        raise ValueError(f"tokenizer.json and tokenizer.model disagree on {len(clash)} piece ids (e.g. {clash[:3]})")
    out = json.loads(json.dumps(tok_json))
    out["model"]["vocab"] = vocab
    out["model"]["merges"] = merges
    return SpliceResult(out, added, skipped), new_model


def unreachable_pieces(model: bytes, added: list[Added]) -> list[Added]:
    """Added pieces that SentencePiece itself never yields whole when encoding the piece's own
    text (checked without the dummy prefix, so pieces inside a word count too)."""
    import sentencepiece as spm

    m = load_proto(model)
    m.normalizer_spec.add_dummy_prefix = False
    sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    return [a for a in added if sp.encode(a.token.replace("▁", " ")) != [a.id]]
