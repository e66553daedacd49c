"""The `serve` and `chat` commands (registered on the main `xllava` app); heavy imports stay lazy."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from xllava.cli_options import SetOpt, config_option, epilog, settings
from xllava.serve.config import ServeConfig

ModelDir = typer.Argument(..., exists=True, file_okay=False, help="an X-LLaVA (HF LLaVA) model directory")
SERVE_EPILOG = epilog(ServeConfig, "serve")


def serve(
    model_dir: Path = ModelDir,
    config: Path = config_option("ServeConfig"),
    overrides: list[str] = SetOpt,
    host: str = typer.Option(None, help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"),
    port: int = typer.Option(None, help="port (default 8000)"),
    api_key: str = typer.Option(None, envvar="XLLAVA_API_KEY", help="require 'Authorization: Bearer KEY'"),
    log_level: str = typer.Option("info"),
) -> None:
    """Serve a model with the OpenAI chat-completions API (and a demo page at /).

    Limits, batching and device are ServeConfig fields: -s max_batch_size=32 -s local_image_root=/data/images."""
    import uvicorn

    from xllava.serve.app import create_app

    typed = [f"{k}={v}" for k, v in (("host", host), ("port", port)) if v is not None]
    cfg = settings(ServeConfig, config, [*(overrides or []), *typed], "serve")
    if api_key:  # from the flag or XLLAVA_API_KEY; never from a file or --set, where it could be logged
        cfg = cfg.model_copy(update={"api_key": api_key})
    app = create_app(model_dir, cfg)
    typer.echo(f"serving {app.state.server.name} on http://{cfg.host}:{cfg.port}  (demo page: /, API: /v1)", err=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=log_level)


def chat(
    model_dir: Path = ModelDir,
    image: Path = typer.Option(None, exists=True, dir_okay=False, help="the image to talk about"),
    max_tokens: int = typer.Option(256),
    temperature: float = typer.Option(0.0, help="0: greedy"),
    system: str = typer.Option(None, help="a system message"),
    device: str = typer.Option("auto", help="cpu, cuda ... (auto: the GPU when there is one)"),
    seed: int = typer.Option(None, help="sampling seed, for reproducible answers at temperature > 0"),
    dtype: str = typer.Option("auto", help="bf16, fp16, fp32 (auto: bf16 on a GPU that has it, else fp32)"),
) -> None:
    """Chat with a model in the terminal (streaming; /image PATH switches images, /help)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from xllava.serve.chat import run_chat

    run_chat(model_dir, image, max_tokens, temperature, system, device, seed, dtype)
