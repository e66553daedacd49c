"""`xllava datagen ...`: generate mvif data from any OpenAI-compatible teacher, and derive training data.

Heavy imports happen inside the commands, so `xllava --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from xllava.cli_options import SetOpt, config_option, epilog, settings
from xllava.datagen.config import DatagenConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Multilingual visual-instruction data (mvif) from a vision teacher over HTTP.")


@app.command(epilog=epilog(DatagenConfig, "datagen"))
def generate(
    image_root: Path = typer.Argument(..., exists=True, file_okay=False,
                                      help="folder with objects.json (Visual Genome format) and the images"),
    out_dir: Path = typer.Argument(..., help="store.jsonl, mvif.jsonl and summary.json go here"),
    config: Path = config_option("DatagenConfig"),
    overrides: list[str] = SetOpt,
    base_url: str = typer.Option(None, help="the teacher: OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 "
                                 "or http://localhost:8000/v1 (vLLM); same as --set teacher.base_url=..."),
    progress: bool = typer.Option(True, help="show a progress bar with the running cost"),
) -> None:
    """Ask the teacher for every selected image x task, resume from the store, derive mvif.jsonl.

    Example: --base-url https://api.openai.com/v1 -s teacher.model=gpt-4o -s budget_usd=50
    -s "languages=[en, ko]" -s selection.image_ids_file=train_ids.txt (relative to IMAGE_ROOT)."""
    from xllava.datagen.derive import derive_training_set
    from xllava.datagen.generate import generate as run_generate
    from xllava.datagen.stage import read_image_ids

    cfg = settings(DatagenConfig, config, [*(overrides or []), *([f"teacher.base_url={base_url}"] if base_url else [])],
                   "datagen")
    if cfg.teacher.base_url is None:
        raise typer.BadParameter("the teacher's endpoint is needed: --base-url URL (or teacher.base_url)")
    ids_file = cfg.selection.image_ids_file
    only = read_image_ids(image_root / ids_file) if ids_file else None
    summary = run_generate(cfg, image_root, out_dir, cfg.teacher.base_url, only_ids=only, progress=progress)
    summary["training_set"] = derive_training_set(out_dir / cfg.store, out_dir / "mvif.jsonl", image_root,
                                                  cfg.quality, image_first=cfg.image_first)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    typer.echo(json.dumps(summary, indent=1, ensure_ascii=False))


@app.command()
def derive(
    out_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="the generator's output folder"),
    image_root: Path = typer.Argument(..., exists=True, file_okay=False, help="the image root it was run on"),
    out: Path = typer.Option(None, help="training file (default OUT_DIR/mvif.jsonl)"),
    store: str = typer.Option("store.jsonl", help="store file name inside OUT_DIR"),
) -> None:
    """Derive the LLaVA-format training JSONL from a store (newest successful record per key, accepted items)."""
    from xllava.datagen.derive import derive_training_set

    result = derive_training_set(out_dir / store, out or out_dir / "mvif.jsonl", image_root)
    typer.echo(json.dumps(result, indent=1, ensure_ascii=False))
