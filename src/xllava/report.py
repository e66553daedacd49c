"""The run report: what was trained and how, the loss curves, and the accuracy table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xllava.config import Recipe  # noqa: E402
from xllava.eval.section import render_eval_section, render_html  # noqa: E402
from xllava.vocab.table import render_markdown as render_vocab_table  # noqa: E402


def _manifest(run_dir: Path, stage: str) -> dict | None:
    path = run_dir / stage / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def plot_losses(run_dir: Path, out: Path) -> bool:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    drawn = False
    for stage in ("align", "instruct"):
        path = run_dir / stage / "log_history.json"
        if not path.exists():
            continue
        rows = [h for h in json.loads(path.read_text()) if "loss" in h]
        if rows:
            ax.plot([h["step"] for h in rows], [h["loss"] for h in rows], label=f"{stage}", marker=".")
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("optimizer step (per stage)")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return drawn


def plot_accuracy(scores: dict, out: Path) -> None:
    langs = list(scores)
    categories = sorted({c for s in scores.values() for c in s["per_type"]})
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / max(1, len(langs))
    for i, lang in enumerate(langs):
        xs = [j + i * width for j in range(len(categories))]
        ax.bar(xs, [scores[lang]["per_type"].get(c, 0) * 100 for c in categories], width, label=lang)
        ax.scatter(
            xs, [scores[lang]["majority_baseline"].get(c, 0) * 100 for c in categories],
            marker="_", s=200, color="black", zorder=3,
        )
    ax.set_xticks([j + width * (len(langs) - 1) / 2 for j in range(len(categories))], categories)
    ax.set_ylabel("exact match (%); bars: model, dashes: majority baseline")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def accuracy_table(scores: dict) -> list[str]:
    langs = list(scores)
    categories = sorted({c for s in scores.values() for c in s["per_type"]})
    head = "| question type | " + " | ".join(f"{lang} acc | {lang} majority" for lang in langs) + " |"
    lines = [head, "|---" * (1 + 2 * len(langs)) + "|"]
    for c in categories:
        cells = []
        for lang in langs:
            cells += [f"{scores[lang]['per_type'].get(c, 0):.1%}", f"{scores[lang]['majority_baseline'].get(c, 0):.1%}"]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    mean = []
    for lang in langs:
        base = scores[lang]["majority_baseline"]
        mean += [f"**{scores[lang]['accuracy']:.1%}**", f"{sum(base.values()) / max(1, len(base)):.1%}"]
    lines.append("| **mean over types** | " + " | ".join(mean) + " |")
    return lines


def write_report(recipe: Recipe, run_dir: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# xllava run report: {recipe.name}", ""]
    world = _manifest(run_dir, "world")
    if world:
        f = world["figures"]
        lines += ["## Data", "", f"The embedded world: {json.dumps(f.get('counts', f), ensure_ascii=False)}", ""]

    vocab = _manifest(run_dir, "vocab")
    if vocab:
        f = vocab["figures"]
        plot = Path(f["plot"]) if f.get("plot") else None
        if plot and plot.exists():
            shutil.copy(plot, out_dir / plot.name)
        lines += ["## Vocabulary expansion", "",
                  f"{f.get('added', '?')} {f.get('language', '')} pieces spliced into the base tokenizer as real "
                  "vocabulary; held-out text of each language, base and expanded:", "",
                  render_vocab_table(f, image=plot.name if plot else None), ""]

    lm = _manifest(run_dir, "lm")
    if lm and (run_dir / "lm" / "lm.md").exists():
        plot = run_dir / "lm" / "lm_curves.png"
        if plot.exists():
            shutil.copy(plot, out_dir / plot.name)
        lines += ["## Bilingual LM pretraining", "", (run_dir / "lm" / "lm.md").read_text(encoding="utf-8"), ""]

    lines += ["## What was trained", "", "| stage | projector | vision tower | LLM | samples | time (s) | loss first → last |",
              "|---|---|---|---|---|---|---|"]
    tower_note = None
    for stage in ("align", "instruct"):
        m = _manifest(run_dir, stage)
        if not m:
            continue
        f = m["figures"]
        t = f["trained"]
        first, last = (f"{v:.3f}" if v is not None else "n/a" for v in (f["first_loss"], f["final_loss"]))
        lines.append(
            f"| {stage} | {t['projector']} | {t['vision_tower']} | {t['llm']} | {f['samples']} | {m['seconds']} "
            f"| {first} → {last} |"
        )
        tower_note = f"Vision tower ({recipe.model.vision.tower}): {f['vision_tower']}."
        if not recipe.model.vision.path:
            tower_note += (
                " No pretrained CLIP or SigLIP weights install offline, so this tower "
                f"({recipe.model.vision.num_hidden_layers} layers, {recipe.model.vision.image_size}px, "
                f"patch {recipe.model.vision.patch_size}) was randomly initialised and trained here"
                + (": first by the tower stage (below), then frozen in LLaVA training unless the table says 'full'."
                   if "tower" in recipe.stages else " where the table says 'full'.")
            )
    llm = recipe.model.llm
    lines += ["", f"Base LLM: source `{llm.source}`" + (f" ({llm.path})" if llm.path else "") + f", chat family `{llm.family}`."]
    if llm.source == "scratch":
        lines.append("The LLM was randomly initialised with a byte-level BPE learned on the world's training text.")
    if tower_note:
        lines.append(tower_note)
    if recipe.model.projector_init == "tower_readout":
        lines.append("The projector's first layer started from the tower stage's readout probes "
                     "(`model.projector_init: tower_readout`), so the LLM reads what the tower's probes read.")
    lines.append("")

    tower = _manifest(run_dir, "tower")
    if tower:
        f = tower["figures"]
        probe = ", ".join(f"{k} {v:.1%}" for k, v in f["held_out_probe_accuracy"].items())
        lines += ["## Vision tower pretraining (stand-in for CLIP)", "",
                  f"{f['steps']} steps on {f.get('train_images', 'the world train')} images (the world's train "
                  f"scenes plus any generated for this stage), loss {f['first_loss']:.3f} → {f['final_loss']:.3f}; "
                  f"linear-probe accuracy on held-out scenes: {probe} (relations: every relationship bit of a cell "
                  "right). The probes are discarded.", ""]

    if plot_losses(run_dir, out_dir / "loss_curve.png"):
        lines += ["## Loss", "", "![loss curve](loss_curve.png)", ""]

    suite_path = run_dir / "eval" / "suite_scores.json"
    suite = json.loads(suite_path.read_text()) if suite_path.exists() else {}
    scores = suite.get("benchmarks", {}).get(suite.get("headline"), {})
    if scores and all("majority_baseline" in s for s in scores.values()):  # scored per type, with baselines
        plot_accuracy(scores, out_dir / "accuracy.png")
        lines += [f"## Accuracy by question type ({suite['headline']})", "", *accuracy_table(scores), "",
                  "![accuracy](accuracy.png)", "",
                  f"Protocol: {next(iter(scores.values()))['protocol']}. "
                  "Greedy decoding through the model's chat template; the majority baseline always gives "
                  "the most common answer of its question type.", ""]
    if suite:
        lines += [render_eval_section(suite, out_dir), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html("\n".join(lines), f"xllava run report: {recipe.name}"), encoding="utf-8")
    return path
