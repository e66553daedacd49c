"""The vocabulary report: a Markdown table (also embedded in the run report) and a bar chart."""

from __future__ import annotations

from pathlib import Path

COLUMNS = [
    ("tokens_per_char", "tokens/char", "{:.3f}"),
    ("tokens_per_word", "tokens/word", "{:.2f}"),
    ("tokens_per_script_char", "tokens/script char", "{:.3f}"),
    ("byte_fallback_share", "byte-fallback share", "{:.1%}"),
    ("continued_word_rate", "continued words", "{:.1%}"),
    ("roundtrip_exact", "round trip exact", "{:.1%}"),
    ("tokens", "tokens", "{:,}"),
]


def render_markdown(figures: dict, image: str | None = None) -> str:
    """Markdown for a vocab stage's figures: the per-language table, then the expansion's checks.

    `figures` is what run_vocab_stage / report_tokenizers return: {"metrics": {"base"|"expanded":
    {lang: {...}}}, "added", "scaffold", "unreachable", "roundtrip_failures", "plot"?}. The chart is
    linked as `image` (a path relative to where the Markdown goes; default: the plot's file name)."""
    metrics = figures["metrics"]
    lines = ["| tokenizer | lang | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for name in ("base", "expanded"):
        for lang, m in metrics.get(name, {}).items():
            cells = [fmt.format(m[key]) if key in m else "–" for key, _, fmt in COLUMNS]
            lines.append(f"| {name} | {lang} | " + " | ".join(cells) + " |")
    changes = []
    for lang in metrics.get("expanded", {}):
        if lang in metrics.get("base", {}):
            b, e = metrics["base"][lang]["tokens"], metrics["expanded"][lang]["tokens"]
            changes.append(f"{lang} {e / max(b, 1) - 1:+.1%}")
    out = ["\n".join(lines), ""]
    if changes:
        out.append("Held-out token count, expanded vs base: " + ", ".join(changes) + ".")
    if "added" in figures:
        dead = f"{figures.get('unreachable', 0)}"
        if "unreachable_sentencepiece" in figures:
            dead += f" (SentencePiece model: {figures['unreachable_sentencepiece']})"
        out.append(
            f"Added tokens: {figures['added']:,} ({figures.get('scaffold', 0):,} of them scaffolding prefixes); "
            f"unreachable: {dead}; "
            f"round-trip failures on edge cases: {len(figures.get('roundtrip_failures', []))}."
        )
    if image or figures.get("plot"):
        out.append(f"\n![base vs expanded tokenizer]({image or Path(figures['plot']).name})")
    return "\n".join(out) + "\n"


PLOTTED = (("tokens_per_char", "tokens per character", "%.2f"), ("byte_fallback_share", "byte-fallback share", "%.2f"))


def plot_bars(metrics: dict, path: Path) -> Path:
    """Grouped bars per language, base vs expanded: tokens per character and byte-fallback share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(metrics.get("base", {}) or metrics.get("expanded", {}))
    names = [n for n in ("base", "expanded") if metrics.get(n)]
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(2 + 2.4 * len(langs), 3.2))
    width = 0.8 / max(len(names), 1)
    for ax, (key, label, fmt) in zip(axes, PLOTTED, strict=True):
        for j, name in enumerate(names):
            values = [metrics[name].get(lang, {}).get(key, 0.0) for lang in langs]
            bars = ax.bar([i + j * width for i in range(len(langs))], values, width, label=name)
            ax.bar_label(bars, fmt=fmt, fontsize=7)
        ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(langs))], langs)
        ax.set_title(label, fontsize=10)
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle("held-out text: base vs expanded tokenizer", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
