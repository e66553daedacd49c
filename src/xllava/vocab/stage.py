"""The `vocab` stage: learn target-language pieces, splice them into the LLM's tokenizer, resize and
initialise the embeddings, measure base vs expanded on held-out text.

    figures = run_vocab_stage(cfg, llm_dir, out_dir)

out_dir/model is the expanded HF directory (the LLM, or just the tokenizer when llm_dir holds
no model); out_dir also gets metrics.json, vocab.md (the table), vocab_bars.png, pieces.txt and
added_tokens.tsv.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import Tokenizer

from xllava.corpus import sample
from xllava.corpus.readers import read_corpus, split_texts
from xllava.io import atomic_directory
from xllava.vocab.bytelevel import Added, from_bytelevel
from xllava.vocab.config import VocabConfig
from xllava.vocab.embeddings import resize_and_init
from xllava.vocab.expand import (
    TokenizerExpansion,
    base_parts,
    expand_tokenizer,
    save_tokenizer,
    tokenizer_family,
    write_added_tsv,
)
from xllava.vocab.learn import filter_pieces, learn_spm, pieces_of_model, read_pieces_file
from xllava.vocab.metrics import measure, partial_token_mask, roundtrip_failures, unreachable
from xllava.vocab.spm import unreachable_pieces
from xllava.vocab.table import plot_bars, render_markdown


def corpus_texts(cfg: VocabConfig, root: Path | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """Learning text of the target language, and held-out text per evaluation language.

    The shipped LibreOffice sample gives both from its page-level split; a user corpus is split
    by content hash, and languages it lacks are measured on the LibreOffice held-out pages."""
    if cfg.corpus == "libreoffice":
        train = sample.texts(cfg.language, "train")
        heldout = {}
    else:
        path = Path(cfg.corpus)
        if not path.is_absolute() and root is not None:
            path = root / path
        train, held = split_texts(read_corpus(path, cfg.text_field, cfg.lang_filter), cfg.heldout_percent)
        heldout = {cfg.language: held[: cfg.eval_limit] if cfg.eval_limit else held}
    for lang in cfg.eval_languages:
        if lang not in heldout and lang in sample.LANGS:
            heldout[lang] = sample.texts(lang, "heldout", limit=cfg.eval_limit)
    if cfg.max_train_chars is not None:
        kept, total = [], 0
        for t in train:
            if total + len(t) > cfg.max_train_chars:
                break
            kept.append(t)
            total += len(t)
        train = kept
    if not train:
        raise ValueError(f"vocab.corpus {cfg.corpus!r} gave no {cfg.language} text to learn from")
    return train, heldout


def target_pieces(cfg: VocabConfig, train: list[str], out_dir: Path | None = None, root: Path | None = None
                  ) -> list[str]:
    """The pieces to add, in priority order: learned with SentencePiece, or from vocab.pieces_file."""
    if cfg.pieces_file:
        path = Path(cfg.pieces_file)
        pieces = read_pieces_file(root / path if root is not None and not path.is_absolute() else path)
    else:
        model = learn_spm(train, cfg.n_pieces, cfg.model_type, cfg.character_coverage, cfg.seed)
        if out_dir is not None:
            (out_dir / "pieces.model").write_bytes(model)
        pieces = pieces_of_model(model)
    pieces = filter_pieces(pieces, cfg.script_pattern())
    if out_dir is not None:
        (out_dir / "pieces.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return pieces


def _save_model(llm_dir: Path, exp: TokenizerExpansion, cfg: VocabConfig, out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(llm_dir, dtype="auto")
    parts = base_parts(Tokenizer.from_file(str(llm_dir / "tokenizer.json")), exp.added)
    with torch.no_grad():
        info = resize_and_init(model, exp.n_base, [a.id for a in exp.added], parts, cfg.init,
                               cfg.pad_to_multiple_of, cfg.seed)
    model.save_pretrained(out)
    return info


def report_tokenizers(base: Tokenizer, expanded: Tokenizer, added: list[Added], bytelevel: bool,
                      heldout: dict[str, list[str]], saved_dir: Path | None = None) -> dict:
    """Base vs expanded figures on held-out text, the unreachable count and edge-case round trips
    (through the tokenizers library, and through plain AutoTokenizer on the saved directory)."""
    metrics: dict[str, dict] = {"base": {}, "expanded": {}}
    masks = (partial_token_mask(base, bytelevel), partial_token_mask(expanded, bytelevel))
    for lang, texts in heldout.items():
        metrics["base"][lang] = measure(base, texts, lang, bytelevel, masks[0])
        metrics["expanded"][lang] = measure(expanded, texts, lang, bytelevel, masks[1])
    fails = roundtrip_failures(lambda x: expanded.encode(x, add_special_tokens=False).ids,
                               lambda ids: expanded.decode(ids, skip_special_tokens=True))
    if saved_dir is not None:
        from transformers import AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        auto = AutoTokenizer.from_pretrained(saved_dir)
        fails += [f"AutoTokenizer: {x!r}" for x in roundtrip_failures(
            lambda x: auto(x, add_special_tokens=False)["input_ids"],
            lambda ids: auto.decode(ids, skip_special_tokens=True))]
        # every base token, added and reserved special tokens included, keeps its id in plain transformers
        auto_vocab = auto.get_vocab()
        moved = [t for t, i in base.get_vocab(with_added_tokens=True).items() if auto_vocab.get(t) != i]
    dead = unreachable(expanded, added, bytelevel)
    if saved_dir is None:
        moved = [t for t, i in base.get_vocab(with_added_tokens=True).items() if expanded.token_to_id(t) != i]
    return {
        "family": "bytelevel" if bytelevel else "sentencepiece",
        "base_size": base.get_vocab_size(with_added_tokens=True),
        "expanded_size": expanded.get_vocab_size(with_added_tokens=True),
        "added": len(added),
        "scaffold": sum(a.kind == "scaffold" for a in added),
        "unreachable": len(dead),
        "unreachable_examples": [a.token for a in dead[:10]],
        "roundtrip_failures": fails,
        "moved_ids": len(moved),
        "moved_examples": moved[:5],
        "metrics": metrics,
    }


class ExpansionError(ValueError):
    """The expanded tokenizer loses text or has dead tokens: the stage fails instead of reporting it."""


def check_expansion(base: Tokenizer, expanded: Tokenizer, heldout: dict[str, list[str]], figures: dict) -> None:
    """Every held-out text the base tokenizer gives back exactly must come back exactly from the
    expanded one; the edge cases must round-trip; every base token keeps its id; no added token
    may be unreachable."""
    problems = []
    for lang, texts in heldout.items():
        b = base.encode_batch(list(texts), add_special_tokens=False)
        e = expanded.encode_batch(list(texts), add_special_tokens=False)
        lost = [t for t, be, ee in zip(texts, b, e, strict=True)
                if base.decode(be.ids, skip_special_tokens=True) == t
                and expanded.decode(ee.ids, skip_special_tokens=True) != t]
        if lost:
            problems.append(f"{len(lost)} held-out {lang} texts no longer round-trip (e.g. {lost[0][:80]!r})")
    if figures["roundtrip_failures"]:
        problems.append(f"edge cases that do not round-trip: {figures['roundtrip_failures'][:3]}")
    if figures.get("moved_ids"):
        problems.append(f"{figures['moved_ids']} base tokens have other ids (e.g. {figures['moved_examples']})")
    if figures["unreachable"]:
        problems.append(f"{figures['unreachable']} added tokens are never produced "
                        f"(e.g. {figures['unreachable_examples'][:3]})")
    if problems:
        raise ExpansionError("vocabulary expansion failed its checks: " + "; ".join(problems))


def compare_dirs(base_dir: Path, expanded_dir: Path, heldout: dict[str, list[str]]) -> dict:
    """Figures for two tokenizer directories, e.g. an expansion made elsewhere: every id past the
    base vocabulary counts as added."""
    base = Tokenizer.from_file(str(Path(base_dir) / "tokenizer.json"))
    expanded = Tokenizer.from_file(str(Path(expanded_dir) / "tokenizer.json"))
    bytelevel = tokenizer_family(Path(expanded_dir)) == "bytelevel"
    n_base = base.get_vocab_size(with_added_tokens=True)
    added = []
    for token, i in sorted(expanded.get_vocab(with_added_tokens=False).items(), key=lambda x: x[1]):
        if i >= n_base:
            text = from_bytelevel(token) if bytelevel else token.replace("▁", " ")
            added.append(Added(i, token, text, "piece"))
    return report_tokenizers(base, expanded, added, bytelevel, heldout, Path(expanded_dir))


def run_vocab_stage(cfg: VocabConfig, llm_dir: Path, out_dir: Path, root: Path | None = None) -> dict:
    """Expand the HF causal-LM directory llm_dir (or a tokenizer-only directory) into out_dir/model.

    `root` resolves a relative vocab.corpus (the run directory). Returns the stage figures,
    including model_dir, the metrics, and the paths of the Markdown table and the bar chart."""
    llm_dir, out_dir = Path(llm_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, heldout = corpus_texts(cfg, root)
    pieces = target_pieces(cfg, train, out_dir, root)
    exp = expand_tokenizer(llm_dir, pieces, cfg.max_added, cfg.script_pattern())
    model_dir = out_dir / "model"
    embedding_info: dict = {}
    with atomic_directory(model_dir) as tmp:
        if (llm_dir / "config.json").exists():
            embedding_info = _save_model(llm_dir, exp, cfg, tmp)
        save_tokenizer(llm_dir, exp, tmp)
        (tmp / "xllava_vocab.json").write_text(json.dumps({
            "base": str(llm_dir), "language": cfg.language, "family": exp.family, "n_base": exp.n_base,
            "added": len(exp.added), "init": cfg.init, **embedding_info}, indent=1))
    write_added_tsv(exp.added, out_dir / "added_tokens.tsv")
    base = Tokenizer.from_file(str(llm_dir / "tokenizer.json"))
    expanded = exp.tokenizer
    figures = report_tokenizers(base, expanded, exp.added, exp.bytelevel, heldout, model_dir)
    check_expansion(base, expanded, heldout, figures)
    if exp.spm_model is not None:
        figures["unreachable_sentencepiece"] = len(unreachable_pieces(exp.spm_model, exp.added))
    figures.update({
        "skipped": exp.skipped,
        "model_dir": str(model_dir),
        "language": cfg.language,
        "train_texts": len(train),
        "train_chars": sum(map(len, train)),
        "pieces": len(pieces),
        "embeddings": embedding_info,
    })
    figures["plot"] = str(plot_bars(figures["metrics"], out_dir / "vocab_bars.png"))
    table = out_dir / "vocab.md"
    table.write_text(render_markdown(figures), encoding="utf-8")
    figures["table"] = str(table)
    (out_dir / "metrics.json").write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
    return figures
