"""The `serve` and `chat` commands (registered on the main `xllava` app); heavy imports stay lazy."""

from __future__ import annotations

import os
from pathlib import Path

import typer

ModelDir = typer.Argument(..., exists=True, file_okay=False, help="an X-LLaVA (HF LLaVA) model directory")


def serve(
    model_dir: Path = ModelDir,
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0 for every interface)"),
    port: int = typer.Option(8000),
    api_key: str = typer.Option(None, envvar="XLLAVA_API_KEY", help="require 'Authorization: Bearer KEY'"),
    model_name: str = typer.Option(None, help="model id to report (default: the directory's name)"),
    local_images: Path = typer.Option(None, file_okay=False, help="allow image paths under this folder"),
    max_tokens_limit: int = typer.Option(1024, help="largest max_tokens a request may ask for"),
    max_prompt_tokens: int = typer.Option(4096, help="longest prompt, image tokens included"),
    max_image_bytes: int = typer.Option(10 << 20, help="largest image, in bytes"),
    max_image_pixels: int = typer.Option(4096 * 4096, help="largest image, in width x height"),
    max_batch_size: int = typer.Option(16, help="requests generated together"),
    batch_wait_ms: float = typer.Option(20.0, help="longest wait of a request for others to share its prefill"),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:1 ... (auto: the GPU when there is one)"),
    threads: int = typer.Option(1, help="torch CPU threads (1 is robust for small models; 0: torch's default)"),
    dtype: str = typer.Option("auto", help="bf16, fp16, fp32 (auto: bf16 on a GPU that has it, else fp32)"),
    log_level: str = typer.Option("info"),
) -> None:
    """Serve a model with the OpenAI chat-completions API (and a demo page at /)."""
    import uvicorn

    from xllava.serve.app import create_app
    from xllava.serve.config import ServeConfig

    cfg = ServeConfig(
        host=host, port=port, api_key=api_key or None, model_name=model_name, local_image_root=local_images,
        max_tokens_limit=max_tokens_limit, max_prompt_tokens=max_prompt_tokens, max_image_bytes=max_image_bytes,
        max_image_pixels=max_image_pixels, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
        device=device, cpu_threads=threads or None, dtype=dtype,
    )
    app = create_app(model_dir, cfg)
    typer.echo(f"serving {app.state.server.name} on http://{host}:{port}  (demo page: /, API: /v1)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


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
