"""Aligned Korean-English-Chinese paragraphs from the LibreOffice help (Debian, MPL-2.0).

The Debian packages `libreoffice-help-{ko,en-us,zh-cn}` install the same 2,561 HTML pages per
language; every translatable paragraph carries the same `id` in every language, so alignment is
an exact join on (page, id), no sentence aligner involved. Untranslated paragraphs stay English in
the ko/zh pages, so a paragraph counts as translated only when it contains the target script and
differs from the English one.

Pages have "switchinline" spans that hold one variant per platform or module (MAC, WRITER, ...)
plus a `default` variant, all but one hidden; only the default is kept, so a paragraph reads as
the help viewer shows it on Linux ("Ctrl + F", not "CommandCtrl + F").
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

PACKAGES = {"ko": "libreoffice-help-ko", "en": "libreoffice-help-en-us", "zh": "libreoffice-help-zh-cn"}
# folder names under usr/share/libreoffice/help/
HELP_LANGS = {"ko": "ko", "en": "en-US", "zh": "zh-CN"}
HELP_ROOT = Path("usr/share/libreoffice/help")

_BLOCKS = {"p", "h1", "h2", "h3", "h4", "h5", "h6"}
# HTML elements without an end tag: they must not open a nesting level
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_SPACES = re.compile(r"\s+")


class _Paragraphs(HTMLParser):
    """Collect {id: text} for every <p>/<h1..6> that carries an id, skipping hidden variants."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: dict[str, str] = {}
        self._block: tuple[str, str] | None = None  # (tag, id) of the block being read
        self._depth = 0  # nesting inside the block
        self._skip_at: int | None = None  # depth at which a hidden subtree started
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self._block is None:
            if tag in _BLOCKS and a.get("id"):
                self._block, self._depth, self._buf, self._skip_at = (tag, a["id"] or ""), 0, [], None
            return
        if tag in _VOID:
            return
        self._depth += 1
        hidden_variant = "hidden" in a and not (a.get("id") or "").startswith("default")
        if self._skip_at is None and hidden_variant:
            self._skip_at = self._depth

    def handle_endtag(self, tag: str) -> None:
        if self._block is None or tag in _VOID:
            return
        if tag == self._block[0]:  # blocks never nest, so this closes it even after a stray open tag
            text = _SPACES.sub(" ", "".join(self._buf)).strip()
            if text:
                self.out[self._block[1]] = text
            self._block = None
            return
        if self._skip_at is not None and self._depth == self._skip_at:
            self._skip_at = None
        self._depth = max(0, self._depth - 1)

    def handle_data(self, data: str) -> None:
        if self._block is not None and self._skip_at is None:
            self._buf.append(data)


def page_paragraphs(path: Path) -> dict[str, str]:
    """The id -> text map of one help page, NFC-normalised."""
    parser = _Paragraphs()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return {k: unicodedata.normalize("NFC", v) for k, v in parser.out.items()}


def _translated(text: str | None, english: str, script: re.Pattern[str]) -> str | None:
    if text is None or text == english or not script.search(text):
        return None
    return text


def heldout_page(page: str, heldout_percent: int) -> bool:
    """Whole pages go to one split (neighbouring paragraphs repeat each other), by a stable hash."""
    return int(hashlib.sha1(page.encode()).hexdigest(), 16) % 100 < heldout_percent


@dataclass(frozen=True)
class Paragraph:
    id: str  # "<page>#<paragraph id>"
    page: str
    en: str
    ko: str | None
    zh: str | None
    split: str  # "train" or "heldout"

    def as_json(self) -> dict:
        return {"id": self.id, "page": self.page, "en": self.en, "ko": self.ko, "zh": self.zh, "split": self.split}


def align(root: Path, heldout_percent: int = 10) -> Iterator[Paragraph]:
    """Join the en/ko/zh pages under an unpacked root (the `dpkg-deb -x` target) on paragraph id.

    Yields every English paragraph that has a Korean or a Chinese translation."""
    help_dir = root / HELP_ROOT
    en_dir = help_dir / HELP_LANGS["en"]
    if not en_dir.is_dir():
        raise FileNotFoundError(f"{en_dir} is missing: unpack {PACKAGES['en']} (dpkg-deb -x) into {root}")
    for lang in ("ko", "zh"):
        if not (help_dir / HELP_LANGS[lang]).is_dir():
            raise FileNotFoundError(f"{help_dir / HELP_LANGS[lang]} is missing: unpack {PACKAGES[lang]} into {root}")
    for en_page in sorted(en_dir.rglob("*.html")):
        rel = en_page.relative_to(en_dir).as_posix()
        en = page_paragraphs(en_page)
        other = {}
        for lang in ("ko", "zh"):
            path = help_dir / HELP_LANGS[lang] / rel
            other[lang] = page_paragraphs(path) if path.exists() else {}
        split = "heldout" if heldout_page(rel, heldout_percent) else "train"
        for pid, en_text in en.items():
            ko = _translated(other["ko"].get(pid), en_text, _HANGUL)
            zh = _translated(other["zh"].get(pid), en_text, _HAN)
            if ko or zh:
                yield Paragraph(f"{rel}#{pid}", rel, en_text, ko, zh, split)


def fetch_packages(dest: Path) -> Path:
    """`apt-get download` the three help packages and unpack them under dest; returns the root."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not available: build the corpus on a Debian/Ubuntu machine "
                               "or pass --root with the packages already unpacked")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["apt-get", "download", *PACKAGES.values()], cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get download {' '.join(PACKAGES.values())} failed "
                               f"(run apt-get update first?):\n{done.stderr.strip()}")
        for deb in sorted(Path(tmp).glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    return dest
