"""The `lm` stage: bits per character before, train, bits per character after, merged model.

    figures = run_lm_stage(cfg, llm_dir, out_dir, root)

out_dir/model is the merged HF causal-LM directory (with tokenizer and xllava_lm.json, the
resolved config); out_dir also gets metrics.json, lm.md and lm_curves.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from xllava.lm.config import LmConfig


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _bpc(path: Path, heldout: dict[str, list[str]], cfg: LmConfig) -> dict:
    from xllava.lm.metrics import bpc_table

    model, tok = _load(path)
    return bpc_table(model, tok, heldout, cfg.eval_batch_size, cfg.seq_len)


def run_lm_stage(cfg: LmConfig, llm_dir: Path, out_dir: Path, root: Path | None = None, leader: bool = True) -> dict:
    """Continue causal-LM training of llm_dir (an expanded LLM, or any HF causal LM) into out_dir/model.

    Under a launcher every rank calls this: the other ranks (leader=False) take part in the same
    trainings and nothing else; rank 0 alone measures bits per character and writes the files."""
    from transformers import AutoTokenizer

    from xllava.lm.data import build_dataset, load_texts
    from xllava.lm.train import train_lm

    llm_dir, out_dir = Path(llm_dir), Path(out_dir)
    texts = load_texts(cfg, root)
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    dataset, data_info = build_dataset(cfg, texts, tokenizer)
    vocab_info = llm_dir / "xllava_vocab.json"
    base_dir = Path(json.loads(vocab_info.read_text())["base"]) if vocab_info.exists() else None
    compare = cfg.compare_unexpanded and base_dir is not None and (base_dir / "config.json").exists()
    if not leader:
        result = train_lm(cfg, llm_dir, out_dir, dataset, tokenizer)
        if compare:
            same = cfg.model_copy(update={"compare_unexpanded": False, "max_steps": result.steps})
            base_tok = AutoTokenizer.from_pretrained(base_dir)
            train_lm(same, base_dir, out_dir / "unexpanded", build_dataset(same, texts, base_tok)[0], base_tok)
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lm_config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=1))
    bpc: dict[str, dict] = {"before": _bpc(llm_dir, texts.heldout, cfg)}
    if base_dir is not None and (base_dir / "config.json").exists():
        bpc["base"] = _bpc(base_dir, texts.heldout, cfg)
    result = train_lm(cfg, llm_dir, out_dir, dataset, tokenizer)
    bpc["after"] = _bpc(result.model_dir, texts.heldout, cfg)
    if compare:
        # the same number of optimizer steps of the same length: the same compute, not the same text
        same = cfg.model_copy(update={"compare_unexpanded": False, "max_steps": result.steps})
        base_tok = AutoTokenizer.from_pretrained(base_dir)
        base_data, _ = build_dataset(same, texts, base_tok)
        base_result = train_lm(same, base_dir, out_dir / "unexpanded", base_data, base_tok)
        bpc["unexpanded_after"] = _bpc(base_result.model_dir, texts.heldout, cfg)
    history = [{"step": h["step"], "loss": h["loss"]} for h in result.log_history if "loss" in h]
    figures = {
        "model_dir": str(result.model_dir),
        "init_dir": str(llm_dir),
        "mode": cfg.mode,
        "embeddings": cfg.embeddings if cfg.mode == "lora" else "all (full)",
        "trained_rows": result.trained_rows,
        "fused_lora_projections": result.fused_lora,
        "trainable_parameters": result.trainable_parameters,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "tokens": result.tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "data": data_info,
        "bpc": {k: {lang: round(m["bpc"], 4) for lang, m in v.items()} for k, v in bpc.items()},
        "bpc_detail": bpc,
        "loss_history": history,
    }
    figures["plot"] = str(plot_curves(figures, out_dir / "lm_curves.png"))
    (out_dir / "lm.md").write_text(render_markdown(figures), encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
    return figures


ROWS = (("base", "base LLM (unexpanded, untrained)"), ("before", "this stage's input (untrained)"),
        ("after", "after lm training"), ("unexpanded_after", "unexpanded base after the same steps"))


def render_markdown(figures: dict, image: str | None = None) -> str:
    """Held-out bits per character per language, before and after, with the training budget."""
    bpc = figures["bpc"]
    langs = list(bpc.get("before") or next(iter(bpc.values())))
    lines = ["| model | " + " | ".join(f"{lang} bpc" for lang in langs) + " |", "|---|" + "---:|" * len(langs)]
    for key, label in ROWS:
        if key in bpc:
            lines.append(f"| {label} | " + " | ".join(f"{bpc[key].get(lang, float('nan')):.3f}" for lang in langs)
                         + " |")
    out = ["\n".join(lines), ""]
    if "after" in bpc and "before" in bpc:
        out.append("Change after training: " + ", ".join(
            f"{lang} {bpc['after'][lang] / bpc['before'][lang] - 1:+.1%}" for lang in langs) + ".")
    if "after" in bpc and "base" in bpc:
        out.append("After training vs the base LLM: " + ", ".join(
            f"{lang} {bpc['after'][lang] / bpc['base'][lang] - 1:+.1%}" for lang in langs) + ".")
    d = figures.get("data", {})
    out.append(
        f"Budget: {figures['steps']} steps, {figures['tokens']:,} tokens in {figures['seconds']} s "
        f"({figures['tokens_per_second']:.0f} tokens/s); mode {figures['mode']}, embedding rows "
        f"{figures['embeddings']} ({figures['trained_rows']} rows), "
        f"{figures['trainable_parameters']:,} trainable parameters. Epoch: {d.get('stream_tokens', 0):,} "
        f"packed tokens in {d.get('blocks', 0)} blocks, per key {d.get('tokens_per_key', {})}. "
        "Attention and loss stay within each document (position ids restart at every EOS); "
        f"{d.get('split_documents', 0)} documents continue across a block boundary at position 0.")
    if "plot" in figures:
        out += ["", f"![bits per character and loss]({image or Path(figures['plot']).name})"]
    return "\n".join(out) + "\n"


def plot_curves(figures: dict, path: Path) -> Path:
    """Left: bits per character per language for each model; right: the training loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bpc = figures["bpc"]
    keys = [k for k, _ in ROWS if k in bpc]
    langs = list(bpc.get("before") or next(iter(bpc.values())))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    width = 0.8 / max(len(keys), 1)
    for j, key in enumerate(keys):
        bars = ax.bar([i + j * width for i in range(len(langs))], [bpc[key].get(lang, 0) for lang in langs],
                      width, label=key)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(langs))], langs)
    ax.set_title("held-out bits per character", fontsize=10)
    ax.legend(frameon=False, fontsize=7)
    hist = figures.get("loss_history", [])
    ax2.plot([h["step"] for h in hist], [h["loss"] for h in hist], marker=".")
    ax2.set_xlabel("step")
    ax2.set_title("training loss (nats/token)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
