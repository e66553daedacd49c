"""The evaluation section of the run report (Markdown) and its plots.

Layout of the headline table follows X-LLaVA's Table 3: Korean columns first, then English, one row
per model. The paper's published numbers are placed beside ours only where the benchmark is the
same dataset (a result's `dataset` names it); the world's instances are not, so for them the paper's
numbers are listed apart, for orientation only. Every score's protocol is named under the table.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# X-LLaVA, Table 3 (paper.md section 6.2): dataset name -> published score.
PAPER_TABLE3 = {
    "bvqa-ko": 57.9, "koviz": 51.3, "koliv": 61.7, "bvqa-en": 34.3,
    "vqav2-testdev": 75.5, "gqa-testdev-balanced": 64.0, "llava-bench-in-the-wild": 57.5, "pope": 85.5,
}
BENCHMARKS = {  # name -> (column title, headline metric)
    "short": ("short answers", "exact match (ko) / contains (en)"),
    "llava": ("LLaVA questions", "exact match (ko) / contains (en)"),
    "vqav2": ("VQAv2-style", "VQA accuracy"),
    "gqa": ("GQA-style", "accuracy"),
    "pope": ("POPE-style", "F1"),
    "mmbench": ("MMBench-style", "CircularEval accuracy"),
    "llava_bench": ("LLaVA-Bench-style", "relative score"),
}
def _title(scores: dict, name: str) -> str:
    """A benchmark's column title: its format's, or its own name where the recipe named it."""
    if name in BENCHMARKS:
        return BENCHMARKS[name][0]
    fmt = scores.get("formats", {}).get(name, name)
    return f"{name} ({BENCHMARKS[fmt][0]})" if fmt in BENCHMARKS else name


def _metric(scores: dict, name: str) -> str:
    key = name if name in BENCHMARKS else scores.get("formats", {}).get(name, name)
    return BENCHMARKS.get(key, ("", "score"))[1]


LANGUAGE_NAMES = {"ko": "Korean", "en": "English", "zh": "Chinese"}
_COLOURS = {"win": "#3a923a", "tie": "#b0b0b0", "lose": "#c8423b"}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}"


def _languages(scores: dict) -> list[str]:
    langs = list(scores.get("languages", []))
    return sorted(langs, key=lambda lang: (lang != "ko", lang != "en", lang))  # Korean, then English


def plot_benchmarks(scores: dict, out: Path) -> None:
    names = list(scores["benchmarks"])
    langs = _languages(scores)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / max(1, len(langs))
    for i, lang in enumerate(langs):
        values = [(scores["benchmarks"][b].get(lang, {}).get("score") or 0) * 100 for b in names]
        ax.bar([j + i * width for j in range(len(names))], values, width, label=LANGUAGE_NAMES.get(lang, lang))
    ax.set_xticks([j + width * (len(langs) - 1) / 2 for j in range(len(names))], [_title(scores, b) for b in names],
                  rotation=15)
    ax.set_ylabel("headline score (x100)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_preference(preference: dict, languages: list[str], out: Path, model: str) -> None:
    """Win/tie/lose bars per opponent: one panel per language and answer-length variant."""
    variants = sorted({v for per in preference.values() for v in per}, key=lambda v: v != "full")
    fig, axes = plt.subplots(len(variants), len(languages), figsize=(4.8 * len(languages), 0.6 + 1.2 * len(variants)
                             + 0.45 * len(preference) * len(variants)), squeeze=False)
    for r, variant in enumerate(variants):
        for c, lang in enumerate(languages):
            ax = axes[r][c]
            opponents = [o for o in preference if lang in preference[o].get(variant, {})]
            for y, opponent in enumerate(opponents):
                rates = preference[opponent][variant][lang]["rates"]
                left = 0.0
                for key in ("win", "tie", "lose"):
                    width = (rates[key] or 0) * 100
                    ax.barh(y, width, left=left, color=_COLOURS[key])
                    if width >= 8:
                        ax.text(left + width / 2, y, f"{width:.0f}%", ha="center", va="center", fontsize=8)
                    left += width
            ax.set_yticks(range(len(opponents)), [f"vs {o}" for o in opponents])
            ax.set_xlim(0, 100)
            ax.set_title(f"{LANGUAGE_NAMES.get(lang, lang)}, {variant.replace('_', ' ')}", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in _COLOURS.values()]
    fig.legend(handles, list(_COLOURS), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{model}: win / tie / lose (judge, both answer orders)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend under the panels
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _headline_table(scores: dict, langs: list[str]) -> list[str]:
    names = list(scores["benchmarks"])
    columns = [(lang, b) for lang in langs for b in names]
    head = "| model | " + " | ".join(f"{lang}: {_title(scores, b)}" for lang, b in columns) + " |"
    lines = [head, "|---" * (1 + len(columns)) + "|"]
    ours = [_score_cell(scores["benchmarks"][b].get(lang, {})) for lang, b in columns]
    lines.append(f"| **{scores.get('model_name', 'model')}** (ours) | " + " | ".join(ours) + " |")
    paper = [PAPER_TABLE3.get(scores["benchmarks"][b].get(lang, {}).get("dataset", "")) for lang, b in columns]
    if any(v is not None for v in paper):
        lines.append("| X-LLaVA (paper, Table 3) | " + " | ".join("–" if v is None else f"{v:.1f}" for v in paper)
                     + " |")
    return lines


def _score_cell(result: dict) -> str:
    """The score in the mode the recipe chose (official by default), and the other mode's beside it
    in brackets where the two differ."""
    text = _pct(result.get("score"))
    shown = result.get("mode", "official")
    for mode, other in result.get("modes", {}).items():
        if mode != shown and _pct(other.get("score")) != text:
            text += f" ({mode[:3]}. {_pct(other.get('score'))})"
    return text


def _protocols(scores: dict, langs: list[str]) -> list[str]:
    lines = []
    for b in scores["benchmarks"]:
        title, metric = _title(scores, b), _metric(scores, b)
        per = scores["benchmarks"].get(b)
        if not per:
            continue
        protocols = {lang: per[lang]["protocol"] + "".join(
            f"; beside it, {m['protocol']}" for mode, m in per[lang].get("modes", {}).items()
            if mode != per[lang].get("mode", "official")) for lang in langs if lang in per}
        if len(set(protocols.values())) == 1:
            lines.append(f"- **{title}** ({metric}): {next(iter(protocols.values()))}.")
        else:
            for lang, protocol in protocols.items():
                lines.append(f"- **{title}, {lang}** ({metric}): {protocol}.")
    return lines


def _details(scores: dict, langs: list[str]) -> list[str]:
    bench = scores["benchmarks"]
    lines: list[str] = []
    per_type_benches = [b for b in ("short", "vqav2", "gqa", "mmbench") if b in bench]
    for b in per_type_benches:
        types = sorted({t for lang in langs for t in bench[b].get(lang, {}).get("per_type", {})})
        lines += [f"**{_title(scores, b)}** per type (n = " + ", ".join(
            f"{lang} {bench[b][lang]['n']}" for lang in langs if lang in bench[b]) + ")", "",
            "| type | " + " | ".join(langs) + " |", "|---" * (1 + len(langs)) + "|"]
        for t in types:
            lines.append(f"| {t} | " + " | ".join(_pct(bench[b].get(lang, {}).get("per_type", {}).get(t))
                                                 for lang in langs) + " |")
        if b == "mmbench":
            lines.append("| *vanilla (first pass only)* | " + " | ".join(
                _pct(bench[b].get(lang, {}).get("vanilla_accuracy")) for lang in langs) + " |")
            lines.append("| *answers with no extractable choice* | " + " | ".join(
                str(bench[b].get(lang, {}).get("unextracted", "–")) for lang in langs) + " |")
        if b == "short" and "en" in bench[b]:
            lines.append("| *en exact match (for comparison)* | " + " | ".join(
                _pct(bench[b][lang].get("exact_match")) if lang == "en" else "–" for lang in langs) + " |")
        lines.append("")
    if "pope" in bench:
        lines += ["**POPE-style** (x100; yes-ratio = share of yes predictions)", "",
                  "| lang | category | accuracy | precision | recall | F1 | yes-ratio |", "|---|---|---|---|---|---|---|"]
        for lang in langs:
            result = bench["pope"].get(lang)
            if not result:
                continue
            for category, m in [*result["per_category"].items(), ("pooled", result["pooled"])]:
                lines.append(f"| {lang} | {category} | " + " | ".join(
                    _pct(m[k]) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")) + " |")
        lines.append("")
    if "llava_bench" in bench:
        lines += ["**LLaVA-Bench-style**: relative score (reference = 100), judge scores x10", "",
                  "| lang | category | relative | reference | candidate | judged | failed |", "|---|---|---|---|---|---|---|"]
        for lang in langs:
            result = bench["llava_bench"].get(lang)
            if not result:
                continue
            for category, m in result["per_category"].items():
                rel = "–" if m["relative"] is None else f"{m['relative']:.1f}"
                ref = "–" if m["reference_x10"] is None else f"{m['reference_x10']:.1f}"
                cand = "–" if m["candidate_x10"] is None else f"{m['candidate_x10']:.1f}"
                lines.append(f"| {lang} | {category} | {rel} | {ref} | {cand} | {m['judged']} | {m['failed']} |")
        first = next(iter(bench["llava_bench"].values()))
        lines += ["", f"Judge `{first['judge_model']}`, prompt versions "
                  + ", ".join(f"`{bench['llava_bench'][lang]['prompt_version']}`" for lang in langs
                              if lang in bench["llava_bench"])
                  + ". Failed judge calls are counted above and left out of every score"
                  + (" (official mode: an unparsed reply counts as -1, -1 as in the published script)."
                     if any(r.get("mode") == "official" for r in bench["llava_bench"].values()) else "."), ""]
    return lines


def _language_rates(scores: dict, langs: list[str]) -> list[str]:
    lines = ["**Answers in the question's language** (% of answers with letters; answers without letters, "
             "e.g. digits or a bare option letter, are neutral and left out)", "",
             "| benchmark | " + " | ".join(langs) + " |", "|---" * (1 + len(langs)) + "|"]
    for b in scores["benchmarks"]:
        title = _title(scores, b)
        per = scores["benchmarks"].get(b)
        if not per:
            continue
        cells = []
        for lang in langs:
            rate = per.get(lang, {}).get("language_rate")
            cells.append("–" if not rate else f"{_pct(rate['rate'])} ({rate['neutral']} neutral)")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines + [""]


def preference_section(scores: dict, langs: list[str], out_dir: Path) -> list[str]:
    preference = scores.get("preference") or {}
    if not preference:
        return []
    model = scores.get("model_name", "model")
    plot_preference(preference, langs, out_dir / "eval_preference.png", model)
    lines = [f"**Pairwise preference: {model} vs other models**", "",
             "| opponent | answers | lang | win | tie | lose | judged | failed | orders agree |",
             "|---|---|---|---|---|---|---|---|---|"]
    protocol = judge = ""
    for opponent, variants in preference.items():
        for variant, per in variants.items():
            for lang in langs:
                r = per.get(lang)
                if not r:
                    continue
                protocol, judge = r["protocol"], r["judge_model"]
                lines.append(
                    f"| {opponent} | {variant.replace('_', ' ')} | {lang} | {_pct(r['rates']['win'])}% | "
                    f"{_pct(r['rates']['tie'])}% | {_pct(r['rates']['lose'])}% | {r['judged']} | {r['failed']} | "
                    f"{_pct(r['order_agreement'])}% |")
    return lines + ["", "![win / tie / lose](eval_preference.png)", "", f"Protocol: {protocol}.", "",
                    _judge_note(judge), ""]


def _judge_note(judge: str) -> str:
    return (f"Judge: `{judge}`. Scores from one judge model are comparable with each other, not with another "
            "judge's.")


def render_eval_section(scores: dict, out_dir: Path, heading: str = "##") -> str:
    """Markdown for the report; plots are written to out_dir and linked by file name."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    langs = _languages(scores)
    lines = [f"{heading} Evaluation: every benchmark type, Korean and English", ""]
    if scores.get("dataset"):
        lines += [f"Data: {scores['dataset']}, written in each public benchmark format and read back through "
                  "its loader. Scores x100; greedy decoding through the model's chat template.", ""]
    lines += [*_headline_table(scores, langs), "",
              "Scores in the official mode (what each benchmark's own scoring code computes) unless the recipe "
              "chose `extended`; the other mode (`ext.`: xllava's multilingual reading) in brackets where it "
              "differs.", ""]
    if not any(r.get("dataset") in PAPER_TABLE3 for per in scores["benchmarks"].values() for r in per.values()):
        published = ", ".join(f"{k} {v}" for k, v in PAPER_TABLE3.items())
        lines += ["The paper's published X-LLaVA numbers (Table 3: " + published + ") are on the public "
                  "benchmarks, not on these instances, so they are not placed beside ours.", ""]
    if scores["benchmarks"]:
        plot_benchmarks(scores, out_dir / "eval_benchmarks.png")
        lines += ["![headline scores](eval_benchmarks.png)", "", "Protocols:", "", *_protocols(scores, langs), ""]
        lines += [*_details(scores, langs), *_language_rates(scores, langs)]
        if "llava_bench" in scores["benchmarks"]:
            first = next(iter(scores["benchmarks"]["llava_bench"].values()))
            lines += [_judge_note(first["judge_model"]), ""]
    lines += preference_section(scores, langs, out_dir)
    return "\n".join(lines)


def render_html(markdown: str, title: str) -> str:
    """A standalone HTML page of a Markdown report (tables included), for report.html."""
    from html import escape

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{style}</style></head>\n<body>\n{body}</body></html>\n")
