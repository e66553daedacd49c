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
