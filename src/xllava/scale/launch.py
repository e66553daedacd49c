"""The pipeline under `torchrun` / `accelerate launch`: rank 0 runs it, every rank trains.

Only rank 0 decides which stages run, builds the base model, writes manifests, configs and reports
(xllava.pipeline unchanged). When it reaches a training stage (lm, align, instruct) it tells the other ranks which stage
and which initial model, by a broadcast, and all ranks then run `train_stage` together (DDP, FSDP or
DeepSpeed, whichever the launcher configured). The other ranks never read the manifests themselves,
so they cannot disagree with rank 0 about what is complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from xllava.config import Recipe
from xllava.pipeline import Pipeline

DONE, FAILED = "done", "failed"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _state():
    """The process group, joined once; TrainingArguments later reuses it.

    The timeout covers rank 0 working alone (world, tower, base model, eval) while the others wait
    for the next training stage; XLLAVA_DIST_TIMEOUT_S raises it for long stages."""
    import torch
    from accelerate import PartialState

    seconds = int(os.environ.get("XLLAVA_DIST_TIMEOUT_S", "7200"))
    # cpu as train_stage's TrainingArguments sets it (use_cpu): gloo on CPU machines, else NCCL
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=seconds))


def _broadcast(message: object | None) -> object:
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class LeaderPipeline(Pipeline):
    """Pipeline on rank 0: announces each training stage before training it with the other ranks."""

    training = False  # inside a collective: a failure there is left to the launcher, which stops all ranks

    def stage_train(self, name: str, stage_dir: Path) -> dict:
        init = self.base_model_dir() if name == "align" else self.trained_model_dir(before=name)
        _broadcast((name, str(init), str(stage_dir)))  # stage_dir: <stage>.next when a redo
        self.training = True
        figures = super().stage_train(name, stage_dir)
        self.training = False
        return figures

    def stage_lm(self, stage_dir: Path) -> dict:
        _broadcast(("lm", str(self.llm_dir(before="lm")), str(stage_dir)))
        self.training = True
        figures = super().stage_lm(stage_dir)
        self.training = False
        return figures


def follow(recipe: Recipe) -> None:
    """Ranks other than 0: train each stage rank 0 announces, until it says it is done."""
    from xllava.pipeline import stage_context
    from xllava.train.stage import train_stage

    while True:
        message = _broadcast(None)
        if message == DONE:
            return
        if message == FAILED:
            raise SystemExit("rank 0 failed; its log has the error")
        name, init, stage_dir = message
        if name == "lm":  # the same trainings as rank 0; rank 0 alone measures and writes
            from xllava.lm import run_lm_stage

            run_lm_stage(recipe.lm, Path(init), Path(stage_dir), root=recipe.run_dir, leader=False)
            continue
        train_stage(getattr(recipe, name), Path(init), Path(stage_dir), recipe.run_dir, name,
                    stage_context(recipe, name))  # the identity rank 0's checkpoints record


def run_pipeline(
    recipe: Recipe, only: list[str] | None = None, force: bool = False, log: Callable[[str], None] = print
) -> dict[str, dict] | None:
    """`Pipeline.run` in one process; under a launcher with several processes, the results on rank 0
    and None on the other ranks."""
    if world_size() <= 1:
        return Pipeline(recipe, log=log).run(only=only, force=force)
    state = _state()
    finished = False
    try:
        if not state.is_main_process:
            follow(recipe)
            finished = True
            return None
        leader = LeaderPipeline(recipe, log=log)
        try:
            results = leader.run(only=only, force=force)
        except BaseException:
            if not leader.training:  # the others wait in a broadcast: release them
                _broadcast(FAILED)
            raise
        _broadcast(DONE)
        finished = True
        return results
    finally:
        _leave(finished)


def _leave(finished: bool) -> None:
    """Tear the process group down while the interpreter is whole.

    A trainer's DDP module holds the process group and its pending gloo work; left to the
    interpreter's exit, freeing them can abort the process ("terminate called without an active
    exception", exit -6) after all work was written. So: free what the trainings left (they sit in
    reference cycles), wait until every rank is here when all went well (no rank still reading the
    last broadcast), then destroy the group."""
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    if finished:
        dist.barrier()
    dist.destroy_process_group()
