"""`xllava datagen ...`: generate mvif data from any OpenAI-compatible teacher, and derive training data.

Heavy imports happen inside the commands, so `xllava --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Multilingual visual-instruction data (mvif) from a vision teacher over HTTP.")


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@app.command()
def generate(
    image_root: Path = typer.Argument(..., exists=True, file_okay=False,
                                      help="folder with objects.json (Visual Genome format) and the images"),
    out_dir: Path = typer.Argument(..., help="store.jsonl, mvif.jsonl and summary.json go here"),
    config: Path = typer.Option(None, exists=True, dir_okay=False, help="a DatagenConfig YAML; options below override it"),
    base_url: str = typer.Option(None, help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 or "
                                 "http://localhost:8000/v1 (vLLM); required here or in --config"),
    model: str = typer.Option(None, help="teacher model name, e.g. gpt-4o"),
    api_key_env: str = typer.Option(None, help="environment variable holding the API key (default OPENAI_API_KEY)"),
    tasks: str = typer.Option(None, help="comma-separated: object,location,atmosphere,conversation,short_answer"),
    languages: str = typer.Option(None, help="comma-separated language codes (default en,ko,zh)"),
    concurrency: int = typer.Option(None, help="requests in flight"),
    rpm: int = typer.Option(None, help="requests per minute"),
    tpm: int = typer.Option(None, help="tokens per minute"),
    limit: int = typer.Option(None, help="at most this many images"),
    shard: str = typer.Option(None, help="I/N: the I-th of N disjoint shards"),
    min_objects: int = typer.Option(None, help="fewest main objects per image (paper: 3)"),
    max_objects: int = typer.Option(None, help="most main objects per image (paper: 10)"),
    budget: float = typer.Option(None, help="hard cost stop in USD (whole store)"),
    structured_output: str = typer.Option(None, help="auto, json_schema or json_object"),
    ids_file: Path = typer.Option(None, exists=True, dir_okay=False, help="only these image ids (one per line)"),
    retry_failed: bool = typer.Option(False, help="ask again for keys whose last record failed"),
    progress: bool = typer.Option(True, help="show a progress bar with the running cost"),
) -> None:
    """Ask the teacher for every selected image x task, resume from the store, derive mvif.jsonl."""
    import yaml

    from xllava.datagen.config import DatagenConfig
    from xllava.datagen.derive import derive_training_set
    from xllava.datagen.generate import generate as run_generate

    tree = yaml.safe_load(config.read_text(encoding="utf-8")) if config else {}
    tree = tree or {}
    teacher, selection = tree.setdefault("teacher", {}), tree.setdefault("selection", {})
    for section, key, value in [
        (teacher, "base_url", base_url), (teacher, "model", model), (teacher, "api_key_env", api_key_env),
        (teacher, "concurrency", concurrency), (teacher, "rpm", rpm), (teacher, "tpm", tpm),
        (teacher, "structured_output", structured_output), (tree, "tasks", _csv(tasks)),
        (tree, "languages", _csv(languages)), (tree, "budget_usd", budget), (selection, "limit", limit),
        (selection, "min_main_objects", min_objects), (selection, "max_main_objects", max_objects),
    ]:
        if value is not None:
            section[key] = value
    if shard:
        index, _, count = shard.partition("/")
        selection["shard"], selection["num_shards"] = int(index), int(count or 1)
    if retry_failed:
        tree["retry_failed"] = True
    try:
        cfg = DatagenConfig.model_validate(tree)
    except Exception as err:
        raise typer.BadParameter(f"{config or 'options'}: {err}") from err
    if cfg.teacher.base_url is None:
        raise typer.BadParameter("--base-url (or teacher.base_url in --config) is required")
    from xllava.datagen.stage import read_image_ids

    only = read_image_ids(ids_file) if ids_file else None
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
