"""The `xllava` command: `run` for a whole recipe, and one command per stage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from xllava.cli_options import RecipeSetOpt, SetOpt, config_option, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

RecipeArg = typer.Argument(..., exists=True, dir_okay=False, help="recipe YAML (see recipes/)")


def _recipe(path: Path, overrides: list[str] | None):
    from xllava.pipeline import load_recipe

    return load_recipe(path, overrides)


@app.command()
def run(
    recipe: Path = RecipeArg,
    overrides: list[str] = RecipeSetOpt,
    only: list[str] = typer.Option(None, "--only", help="run only these stages (earlier ones must be complete)"),
    force: bool = typer.Option(False, help="redo stages even if complete"),
) -> None:
    """Run a recipe end to end: skip complete stages, resume an interrupted one, write the report."""
    from xllava.preflight import InputError
    from xllava.scale.launch import run_pipeline  # one process, or rank 0 of torchrun/accelerate launch
    from xllava.train.checkpoints import ResumeRefused
    from xllava.train.data import DataError

    r = _recipe(recipe, overrides)
    try:
        results = run_pipeline(r, only=only, force=force)
    except InputError as err:
        typer.echo(f"{recipe}: {err}", err=True)
        raise typer.Exit(2) from None
    except (ResumeRefused, DataError) as err:  # the message says what to fix; a traceback would bury it
        typer.echo(f"{recipe}: {err}", err=True)
        raise typer.Exit(2) from None
    if results is None:  # another rank under a launcher: rank 0 reports
        return
    run_dir = r.run_dir
    typer.echo("")
    if "instruct" in results or "align" in results:
        model_dir = results.get("instruct", results.get("align"))["figures"]["model_dir"]
        typer.echo(f"model:  {model_dir}")
    if "eval" in results:
        figures = results["eval"]["figures"]
        for lang, s in figures["scores"].items():
            if s.get("score") is not None:
                typer.echo(f"{figures['headline']} {lang}: {s['metric']} {s['score']:.1%}")
    if "report" in results:
        typer.echo(f"report: {results['report']['figures']['report']}")
    typer.echo(f"run directory: {run_dir}")


@app.command()
def train(
    stage: str = typer.Argument(..., help="align or instruct"),
    recipe: Path = RecipeArg,
    overrides: list[str] = RecipeSetOpt,
) -> None:
    """Run one training stage of a recipe (earlier stages must be complete); also under
    `torchrun` / `accelerate launch -m xllava.cli train ...` on several GPUs or nodes."""
    from xllava.scale.launch import run_pipeline

    if stage not in ("align", "instruct"):
        raise typer.BadParameter("stage must be align or instruct")
    run_pipeline(_recipe(recipe, overrides), only=[stage])


@app.command()
def ablation(
    plan: Path = typer.Argument(..., help="ablation plan YAML, e.g. recipes/ablation.yaml"),
    overrides: list[str] = RecipeSetOpt,
    only: list[str] = typer.Option(None, "--only", help="run only these variants (the table lists all finished)"),
) -> None:
    """Run every variant of an ablation plan (the paper's Table 2 structure) and write one table."""
    from xllava.ablation import run_ablation

    table = run_ablation(plan, overrides, only)
    typer.echo(table.read_text(encoding="utf-8"))
    typer.echo(f"table: {table}")


# `xllava eval` (one benchmark in its public format: llava|vqav2|gqa|pope|mmbench|llava-bench)
# and `xllava judge` (review, pairwise) live in xllava.eval.commands (typer only at import).
from xllava.eval import commands as _eval_cli  # noqa: E402

app.command("eval", epilog=_eval_cli.EVAL_EPILOG)(_eval_cli.eval_command)
app.add_typer(_eval_cli.judge_app, name="judge")


@app.command()
def ask(
    model_dir: Path = typer.Argument(..., exists=True, file_okay=False),
    image: Path = typer.Argument(..., exists=True, dir_okay=False),
    question: str = typer.Argument(...),
    max_new_tokens: int = 64,
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1 ... (auto: the GPU when there is one)"),
    dtype: str = typer.Option("auto", help="bf16, fp16, fp32 (auto: bf16 on a GPU that has it, else fp32)"),
) -> None:
    """Answer one question about one image (greedy)."""
    from xllava.infer import answer_batch
    from xllava.model.assemble import load_llava
    from xllava.serve.app import resolve_device, resolve_dtype

    where = resolve_device(device)
    model, processor = load_llava(model_dir, dtype=resolve_dtype(dtype, where))
    model.to(where)
    typer.echo(answer_batch(model, processor, [image], [question], max_new_tokens)[0])


# serving: `xllava serve MODEL_DIR` (OpenAI-compatible API + demo page), `xllava chat MODEL_DIR`
from xllava.serve import cli as _serve_cli  # noqa: E402  (typer only; the server's imports are lazy)

app.command("serve", epilog=_serve_cli.SERVE_EPILOG)(_serve_cli.serve)
app.command("chat")(_serve_cli.chat)

# mvif data: `xllava datagen generate|derive|teacher` (typer only at import; the rest is lazy)
from xllava.datagen.cli import app as _datagen_cli  # noqa: E402

app.add_typer(_datagen_cli, name="datagen")


# vocabulary expansion: `xllava vocab learn|expand|report|llama2|corpus` (typer only at import)
from xllava.vocab.cli import app as _vocab_cli  # noqa: E402

app.add_typer(_vocab_cli, name="vocab")

# `xllava families`: the chat families and vision towers a recipe can name
from xllava.model.families_cli import families_command  # noqa: E402

app.command("families")(families_command)

# scale-out: `xllava scale plan RECIPE` (typer only at import); torchrun/accelerate go through `run`/`train`
from xllava.scale.cli import app as _scale_cli  # noqa: E402

app.add_typer(_scale_cli, name="scale")

# bilingual LM pretraining: `xllava lm train|eval-bpc` (typer only at import)
from xllava.lm.cli import app as _lm_cli  # noqa: E402

app.add_typer(_lm_cli, name="lm")

# ---------------------------------------------------------------- the embedded sandbox
# `xllava world build|teacher|judge`: the world's own commands. The CLI is one of the two places that
# name the world (with the pipeline), and imports it only inside these commands.

world_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="The embedded synthetic trilingual world: a sandbox with ground truth for every stage.")


@world_app.command("build")
def world_build(
    out_dir: Path = typer.Argument(..., help="where to write images, annotations, captions, benchmarks"),
    config: Path = config_option("WorldConfig"),
    overrides: list[str] = SetOpt,
) -> None:
    """Build the world: images, Visual Genome annotations, captions, instructions, benchmark files.

    Fields: the world's config (xllava/world/config.py), e.g. -s n_train_scenes=600 -s "languages=[en, ko]"."""
    from xllava.world.build import build_world
    from xllava.world.config import WorldConfig

    summary = build_world(out_dir, settings(WorldConfig, config, overrides, "world"))
    typer.echo(json.dumps(summary["counts"], indent=1, ensure_ascii=False))


@world_app.command("teacher")
def world_teacher(
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


@world_app.command("judge")
def world_judge(
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


app.add_typer(world_app, name="world")

if __name__ == "__main__":
    app()
