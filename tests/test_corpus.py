"""The corpus: LibreOffice help alignment, the shipped sample and its split, users' text/JSONL files."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from xllava.corpus import sample
from xllava.corpus.libreoffice import align, heldout_page, page_paragraphs
from xllava.corpus.readers import CorpusError, read_corpus, read_jsonl, read_text_lines, split_texts

PAGE = """<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>t</title></head><body>
<div id="DisplayArea">
<h1 id="hd_id1" dir="auto">{title}</h1>
<p id="par_id2" class="paragraph">{p2}<img src="x.svg" alt="tip"> <span class="keycode">{key}</span></p>
<p id="par_id3"><span class="switchinline"><span hidden="true" id="MACtext_1" class="MAC">Command</span><span hidden="true" id="defaulttext_1">Ctrl</span></span> + F {p3}</p>
<p id="par_id4">{p4}</p>
<p>no id, never aligned</p>
</div></body></html>"""


def _write(root: Path, lang: str, rel: str, **parts: str) -> None:
    path = root / "usr/share/libreoffice/help" / lang / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PAGE.format(lang=lang, **parts), encoding="utf-8")


@pytest.fixture()
def help_root(tmp_path: Path) -> Path:
    en = dict(title="Find Bar", p2="Press", key="Enter", p3="opens the bar.", p4="Untranslated text.")
    ko = dict(title="찾기 모음", p2="누르세요", key="Enter", p3="막대를 엽니다.", p4="Untranslated text.")
    zh = dict(title="查找栏", p2="按", key="Enter", p3="打开工具栏。", p4="未翻译")
    for rel in ("text/shared/find.html", "text/scalc/other.html"):
        _write(tmp_path, "en-US", rel, **en)
        _write(tmp_path, "ko", rel, **ko)
        _write(tmp_path, "zh-CN", rel, **zh)
    return tmp_path


def test_page_paragraphs_keep_the_default_variant_only(help_root: Path) -> None:
    paras = page_paragraphs(help_root / "usr/share/libreoffice/help/en-US/text/shared/find.html")
    assert paras == {
        "hd_id1": "Find Bar",
        "par_id2": "Press Enter",
        "par_id3": "Ctrl + F opens the bar.",  # not "CommandCtrl": the MAC variant is hidden
        "par_id4": "Untranslated text.",
    }


def test_align_joins_on_paragraph_id_and_drops_untranslated(help_root: Path) -> None:
    rows = list(align(help_root, heldout_percent=50))
    by_id = {r.id: r for r in rows}
    first = by_id["text/shared/find.html#par_id3"]
    assert (first.en, first.ko, first.zh) == ("Ctrl + F opens the bar.", "Ctrl + F 막대를 엽니다.", "Ctrl + F 打开工具栏。")
    untranslated = by_id["text/shared/find.html#par_id4"]
    assert untranslated.ko is None and untranslated.zh == "未翻译"  # ko kept English: not a translation
    # splits go by whole pages, reproducibly
    for r in rows:
        assert r.split == ("heldout" if heldout_page(r.page, 50) else "train")
    assert len({r.split for r in rows if r.page == "text/shared/find.html"}) == 1


def test_align_names_the_missing_package(tmp_path: Path) -> None:
    (tmp_path / "usr/share/libreoffice/help/en-US").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="libreoffice-help-ko"):
        list(align(tmp_path))


def test_shipped_sample_is_small_licensed_and_split_by_page() -> None:
    path = sample.sample_path()
    assert path.exists() and path.stat().st_size < 3_000_000
    assert "Mozilla Public License" in sample.notice_path().read_text(encoding="utf-8")
    assert (path.parent / "MPL-2.0.txt").read_text(encoding="utf-8").startswith("Mozilla Public License")
    records = sample.load_records()
    assert len(records) > 20_000
    pages = {split: {r["id"].split("#")[0] for r in records if r["split"] == split} for split in ("train", "heldout")}
    assert not pages["train"] & pages["heldout"]
    held = len(sample.texts("ko", "heldout"))
    assert 0.05 < held / len(records) < 0.2
    hangul, han = re.compile(r"[\uac00-\ud7a3]"), re.compile(r"[\u4e00-\u9fff]")
    for r in records[:3000]:
        assert hangul.search(r["ko"]) and han.search(r["zh"]) and r["en"]
        assert unicodedata.normalize("NFC", r["ko"]) == r["ko"]


def test_sample_texts_reject_unknown_language() -> None:
    with pytest.raises(ValueError, match="'ja'"):
        sample.texts("ja", "train")


def test_readers_normalise_and_name_bad_lines(tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "한국어 문장")
    txt = tmp_path / "ko.txt"
    txt.write_text(f"{nfd}\n\n  \nㅋㅋㅋ 두 번째\n", encoding="utf-8")
    assert list(read_text_lines(txt)) == ["한국어 문장", "ㅋㅋㅋ 두 번째"]  # NFC, compatibility jamo kept

    jsonl = tmp_path / "data.jsonl"
    rows = [
        {"text": "첫째", "lang": "ko"},
        {"text": "first", "lang": "en"},
        {"conversations": [{"from": "human", "value": "<image>\n무엇이 보이나요?"}, {"from": "gpt", "value": "고양이"}],
         "lang": "ko"},
    ]
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows[:2]) + "\n", encoding="utf-8")
    assert list(read_corpus(jsonl, "text", lang="ko")) == ["첫째"]
    conv = tmp_path / "llava.jsonl"
    conv.write_text(json.dumps(rows[2], ensure_ascii=False) + "\n", encoding="utf-8")
    assert list(read_jsonl(conv, "conversations")) == ["무엇이 보이나요?", "고양이"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: field 'text' is int"):
        list(read_jsonl(bad))
    bad.write_text('{"text": "ok"}\n{"txt": "x"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: no field 'text'"):
        list(read_jsonl(bad))
    bad.write_text('{"text": "ok"}\n\n{oops\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.jsonl:3: invalid JSON"):
        list(read_jsonl(bad))
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1\.txt:2: not UTF-8"):
        list(read_text_lines(latin))


def test_split_is_stable_and_disjoint() -> None:
    texts = [f"문장 {i}" for i in range(500)]
    train, held = split_texts(texts, 10)
    assert set(train).isdisjoint(held) and len(train) + len(held) == 500
    assert 20 < len(held) < 90
    assert split_texts(list(reversed(texts)), 10)[1] == list(reversed(held))


def test_parquet_corpus_reads_a_column_and_filters_by_language(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "wiki.parquet"
    pq.write_table(pa.table({"text": ["서울은 한국의 수도이다.", "Seoul is the capital.", "  ", None],
                             "lang": ["ko", "en", "ko", "ko"]}), path)
    assert list(read_corpus(path)) == ["서울은 한국의 수도이다.", "Seoul is the capital."]
    assert list(read_corpus(path, lang="ko")) == ["서울은 한국의 수도이다."]
    with pytest.raises(CorpusError, match="no column 'body'"):
        list(read_corpus(path, field="body"))
