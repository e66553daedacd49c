"""`xllava families`: the model families and vision towers a recipe can name."""

from __future__ import annotations

import typer

from xllava.model.families import FAMILIES
from xllava.model.towers import TOWERS
from xllava.vocab.npm_tokenizers import NPM_TOKENIZERS


def table_lines() -> list[str]:
    """A Markdown table: family, what its template reproduces, stop tokens, pad, tested tokenizer."""
    lines = ["| family | template source | stop tokens | pad | tested against |", "| --- | --- | --- | --- | --- |"]
    for f in FAMILIES.values():
        tested = (f"{NPM_TOKENIZERS[f.tested_tokenizer].package} chat_template" if f.tested_tokenizer
                  else "written-out format (no shipped template installs offline)")
        stops = ", ".join(f"`{t}`" for t in f.stop_tokens)
        lines.append(f"| `{f.name}` | {f.template_source} | {stops} | `{f.pad_token}` | {tested} |")
    lines += ["", "| tower | HF classes | CLS token dropped |", "| --- | --- | --- |"]
    for t in TOWERS.values():
        lines.append(f"| `{t.name}` | {t.config_class.__name__}, {t.model_class.__name__} | "
                     f"{'yes' if t.select_strategy == 'default' else 'no (no CLS)'} |")
    return lines


def families_command() -> None:
    """Print the model families (chat format, stop tokens, pad token, the real template each is
    tested against) and the vision towers; recipes name them as model.llm.family and model.vision.tower."""
    typer.echo("\n".join(table_lines()))
