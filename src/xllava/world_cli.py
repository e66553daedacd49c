"""`xllava world ...`: build the embedded world, and serve its teacher and judge as OpenAI-compatible
endpoints (what the pipeline starts on loopback when a recipe names `base_url: world`). Part of the
CLI: the world is imported inside each command, so the rest of the CLI never loads it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The embedded synthetic trilingual world: a sandbox with ground truth for every stage.")


@app.command()
def build(
    out_dir: Path = typer.Argument(..., help="where to write images, annotations, captions, benchmarks"),
    recipe: Path = typer.Option(None, exists=True, dir_okay=False, help="take the world section from this recipe"),
    overrides: list[str] = typer.Option(None, "--set", "-s", help="override a recipe field: section.field=value"),
) -> None:
    """Build the world: images, Visual Genome annotations, captions, instructions, benchmark files."""
    from xllava.config import load_recipe
    from xllava.world.build import build_world
    from xllava.world.config import WorldConfig

    cfg = WorldConfig.model_validate(load_recipe(recipe, overrides).world) if recipe else WorldConfig()
    summary = build_world(out_dir, cfg)
    typer.echo(json.dumps(summary["counts"], indent=1, ensure_ascii=False))


@app.command()
def teacher(
    world_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a built world (xllava world build)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8011),
    latency: float = typer.Option(0.0, help="seconds added to every request"),
    rate_429: float = typer.Option(0.0, help="share of requests answered 429 with Retry-After"),
    rate_500: float = typer.Option(0.0, help="share answered 500"),
    rate_malformed: float = typer.Option(0.0, help="share answered with truncated JSON"),
    rate_timeout: float = typer.Option(0.0, help="share that hang for --hang seconds"),
    retry_after: float = typer.Option(1.0, help="Retry-After of injected 429s (seconds)"),
    hang: float = typer.Option(30.0, help="how long a 'timeout' request hangs"),
    seed: int = typer.Option(0, help="fault-injection seed"),
    no_json_schema: bool = typer.Option(False, help="reject response_format json_schema (test JSON-mode fallback)"),
    fd: int = typer.Option(None, hidden=True, help="serve on this inherited listening socket (ServerProcess)"),
) -> None:
    """Serve the world teacher: OpenAI-compatible /v1/chat/completions and /v1/models."""
    from xllava.datagen.openai_server import FaultConfig
    from xllava.world.teacher import MODEL_ID, serve_world_teacher

    faults = FaultConfig(latency_s=latency, rate_429=rate_429, rate_500=rate_500, rate_malformed=rate_malformed,
                         rate_timeout=rate_timeout, retry_after_s=retry_after, hang_s=hang, seed=seed,
                         reject_json_schema=no_json_schema)
    if fd is None:
        typer.echo(f"world teacher on http://{host}:{port}/v1 (model {MODEL_ID})")
    serve_world_teacher(world_dir, faults, host, port, fd)


@app.command()
def judge(
    world_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a built world"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8012),
    rate_500: float = typer.Option(0.0, help="share of calls answered with HTTP 500 (fault injection)"),
    seed: int = typer.Option(0),
) -> None:
    """Serve the world judge (a scene-graph fact checker standing in for GPT-4 offline)."""
    from xllava.datagen.openai_server import FaultConfig, create_app, serve_forever
    from xllava.world.judge import MODEL_NAME, WorldJudge

    typer.echo(f"world judge `{MODEL_NAME}` on http://{host}:{port}/v1")
    serve_forever(create_app(WorldJudge(world_dir), FaultConfig(rate_500=rate_500, seed=seed), (MODEL_NAME,)),
                  host, port)
