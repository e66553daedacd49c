"""Bilingual LM pretraining after vocabulary expansion ("knowledge connection", X-LLaVA section 4.2)."""

from xllava.lm.config import LmConfig

__all__ = ["LmConfig", "render_markdown", "run_lm_stage"]


def __getattr__(name: str):
    # torch/transformers load only when a stage runs, so `import xllava.lm` stays cheap for the CLI
    if name in ("run_lm_stage", "render_markdown"):
        from xllava.lm import stage

        return getattr(stage, name)
    raise AttributeError(name)
