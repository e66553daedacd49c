"""Build the aligned ko-en-zh LibreOffice help corpus, full or as the shipped sample.

    python -m xllava.corpus.build OUT.jsonl [--root DIR] [--sample]

Without --root the three Debian packages are fetched with `apt-get download` (no root needed)
and unpacked into a temporary folder. --sample keeps only the complete triples and writes the
compact form shipped as package data (.jsonl.xz), with the MPL-2.0 notice next to it.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import tempfile
from pathlib import Path

from xllava.corpus.libreoffice import PACKAGES, align, fetch_packages

NOTICE = """\
libreoffice_help.jsonl.xz: paragraphs of the LibreOffice 7.4 help in English, Korean and
Simplified Chinese, extracted from the Debian packages {packages}
(version {version}) by xllava.corpus.build.

The LibreOffice help is Copyright 2000, 2010 Oracle and/or its affiliates and Copyright (c)
2000, 2010 LibreOffice contributors and/or their affiliates, and is licensed under the
Mozilla Public License, v. 2.0. Some files include Apache-2.0 licensed material. The full text
of the MPL-2.0 is in MPL-2.0.txt next to this file and at https://mozilla.org/MPL/2.0/.
The source of this text is the LibreOffice help repository, https://git.libreoffice.org/help,
and the Debian source package `libreoffice`.
"""


def _version(root: Path) -> str:
    changelog = root / "usr/share/doc" / PACKAGES["ko"] / "changelog.Debian.gz"
    if changelog.exists():
        import gzip

        first = gzip.open(changelog, "rt", encoding="utf-8").readline()
        if "(" in first:
            return first.split("(", 1)[1].split(")", 1)[0]
    return "unknown"


def build(out: Path, root: Path, heldout_percent: int = 10, sample: bool = False) -> dict:
    """Write the aligned corpus; returns counts per split and language."""
    counts: dict[str, int] = {}
    keys = ("id", "en", "ko", "zh", "split") if sample else ("id", "page", "en", "ko", "zh", "split")
    out.parent.mkdir(parents=True, exist_ok=True)
    opener = lzma.open if out.suffix == ".xz" else open
    with opener(out, "wt", encoding="utf-8") as f:
        for para in align(root, heldout_percent):
            if sample and not (para.ko and para.zh):
                continue
            rec = para.as_json()
            f.write(json.dumps({k: rec[k] for k in keys}, ensure_ascii=False) + "\n")
            for lang in ("en", "ko", "zh"):
                if rec[lang]:
                    key = f"{para.split}.{lang}"
                    counts[key] = counts.get(key, 0) + 1
    if sample:
        notice = NOTICE.format(packages=", ".join(PACKAGES.values()), version=_version(root))
        (out.parent / "NOTICE").write_text(notice, encoding="utf-8")
        license_text = Path("/usr/share/common-licenses/MPL-2.0")
        if license_text.exists():
            shutil.copyfile(license_text, out.parent / "MPL-2.0.txt")
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--root", type=Path, help="folder where the three packages are already unpacked")
    ap.add_argument("--heldout-percent", type=int, default=10)
    ap.add_argument("--sample", action="store_true", help="complete triples only, as shipped")
    args = ap.parse_args(argv)
    if args.root is None:
        with tempfile.TemporaryDirectory() as tmp:
            counts = build(args.out, fetch_packages(Path(tmp)), args.heldout_percent, args.sample)
    else:
        counts = build(args.out, args.root, args.heldout_percent, args.sample)
    print(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
