"""`xllava lm ...`: continue causal-LM training of an (expanded) LLM, and measure bits per character."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from xllava.cli_options import SetOpt, config_option, epilog, settings
from xllava.lm.config import LmConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bilingual LM pretraining after vocabulary expansion, and held-out bits per character.")

ConfigOpt = config_option("LmConfig")
EPILOG = epilog(LmConfig, "lm")


def _config(config: Path | None, overrides: list[str] | None) -> LmConfig:
    return settings(LmConfig, config, overrides, "lm")


@app.command(epilog=EPILOG)
def train(
    llm_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="HF causal-LM directory (e.g. vocab/model)"),
    out_dir: Path = typer.Argument(..., help="out_dir/model gets the merged model; reruns resume"),
    config: Path = ConfigOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Train, then print held-out bits per character before and after."""
    from xllava.lm.stage import render_markdown, run_lm_stage

    figures = run_lm_stage(_config(config, overrides), llm_dir, out_dir, root=Path.cwd())
    typer.echo(render_markdown(figures))
    typer.echo(f"model: {figures['model_dir']}")


@app.command("eval-bpc", epilog=EPILOG)
def eval_bpc(
    model_dirs: list[Path] = typer.Argument(..., help="HF causal-LM directories to compare"),
    config: Path = ConfigOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Held-out bits per character per language of each model (JSON lines)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from xllava.lm.data import load_texts
    from xllava.lm.metrics import bpc_table

    cfg = _config(config, overrides)
    heldout = load_texts(cfg, Path.cwd()).heldout
    for d in model_dirs:
        table = bpc_table(AutoModelForCausalLM.from_pretrained(d), AutoTokenizer.from_pretrained(d), heldout,
                          cfg.eval_batch_size, cfg.seq_len)
        typer.echo(json.dumps({"model": str(d), **{lang: round(m["bpc"], 4) for lang, m in table.items()}}))
