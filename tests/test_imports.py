"""Each entry module imports on its own in a fresh interpreter: an import cycle between the recipe
config and the stage configs kept beside their code shows only in some import orders."""

from __future__ import annotations

import subprocess
import sys

import pytest

ENTRY_MODULES = ["xllava.config", "xllava.datagen", "xllava.vocab", "xllava.world", "xllava.pipeline", "xllava.cli"]


@pytest.mark.parametrize("module", ENTRY_MODULES)
def test_imports_alone(module: str) -> None:
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


# the sandbox is a plug-in: only these name it (lazily, inside functions)
WORLD_WIRING = {"pipeline.py", "cli.py"}


def test_the_core_never_imports_the_world() -> None:
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "xllava"
    offenders = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
        if rel.parts[0] == "world" or str(rel) in WORLD_WIRING:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}:{node.lineno} {n}" for n in names
                          if n == "xllava.world" or n.startswith("xllava.world.")]
    assert not offenders, offenders
    # and at run time: the CLI, the pipeline and every stage package load without it
    code = ("import sys, xllava.cli, xllava.pipeline, xllava.preflight, xllava.eval.stage, xllava.datagen.stage, "
            "xllava.train.stage, xllava.vocab.stage, xllava.lm.stage, xllava.report\n"
            "print(sorted(m for m in sys.modules if m == 'xllava.world' or m.startswith('xllava.world.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
