"""The shipped sample is what the builder makes from the real Debian packages (downloads 8.5 MB)."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import pytest

from xllava.corpus.build import build
from xllava.corpus.libreoffice import fetch_packages
from xllava.corpus.sample import sample_path


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
                    reason="apt-get/dpkg-deb not available (not a Debian/Ubuntu machine)")
def test_builder_reproduces_the_shipped_sample(tmp_path: Path) -> None:
    try:
        root = fetch_packages(tmp_path / "root")
    except RuntimeError as e:  # no Debian mirror reachable, or an apt cache without the packages
        pytest.skip(f"cannot fetch the LibreOffice help packages: {e}")
    out = tmp_path / "sample" / "libreoffice_help.jsonl.xz"
    counts = build(out, root, sample=True)
    assert counts["train.ko"] > 20_000 and counts["heldout.ko"] > 2_000
    shipped = lzma.open(sample_path(), "rt", encoding="utf-8").read().splitlines()
    rebuilt = lzma.open(out, "rt", encoding="utf-8").read().splitlines()
    # a Debian security update may touch a few help pages; anything more means the builder changed
    same = len(set(shipped) & set(rebuilt))
    assert same >= 0.98 * len(shipped), (
        f"only {same} of {len(shipped)} shipped records come out of a fresh build: rebuild the sample "
        "with `xllava vocab corpus src/xllava/corpus/data/libreoffice_help.jsonl.xz --sample`")
    assert "Mozilla Public License" in (out.parent / "NOTICE").read_text(encoding="utf-8")
