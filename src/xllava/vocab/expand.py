"""Expand a HF tokenizer directory (and the causal LM next to it) with target-language pieces.

The tokenizer family is read from the files, never guessed from a name:
- `tokenizer.model` holding a SentencePiece BPE (Llama-2, Mistral, SOLAR): pieces go into the
  proto (xllava.vocab.spm) and tokenizer.json is regenerated from it;
- a byte-level BPE `tokenizer.json` (SmolLM2, Llama-3, Qwen, DeepSeek-V3): pieces become merges
  (xllava.vocab.bytelevel);
- a SentencePiece-style BPE `tokenizer.json` with byte fallback and no `tokenizer.model` (Gemma-3,
  Mistral): characters plus merges (xllava.vocab.spmjson).
Every id the base tokenizer uses, added and reserved special tokens included, keeps its meaning;
new tokens start after the highest one (xllava.vocab.ids).
The saved directory loads with plain `AutoTokenizer` / `AutoModelForCausalLM`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from xllava.vocab.bytelevel import Added, is_bytelevel, splice_bytelevel
from xllava.vocab.config import SCRIPTS
from xllava.vocab.ids import check_ids_kept, next_free_id
from xllava.vocab.spm import load_proto, splice_spm_tokenizer
from xllava.vocab.spmjson import is_spm_json, splice_spm_json

# tokenizer files carried over from the base; vocab.json/merges.txt are left behind because they
# would disagree with the expanded tokenizer.json
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json")
# classes that load tokenizer.json verbatim; others (LlamaTokenizer in transformers 5) rebuild parts
# of the pipeline and tokenise leading spaces differently from the file
VERBATIM_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


@dataclass
class TokenizerExpansion:
    family: str  # "bytelevel", "sentencepiece" (tokenizer.model) or "sentencepiece_json"
    tokenizer_json: dict
    spm_model: bytes | None
    added: list[Added]
    skipped: dict
    n_base: int  # ids below this are the base tokenizer's

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_str(json.dumps(self.tokenizer_json))

    @property
    def bytelevel(self) -> bool:
        return self.family == "bytelevel"


def tokenizer_family(tok_dir: Path) -> str:
    tok_json = tok_dir / "tokenizer.json"
    if not tok_json.exists():
        raise FileNotFoundError(f"{tok_dir} has no tokenizer.json (save the tokenizer with a fast backend first)")
    spm_file = tok_dir / "tokenizer.model"
    if spm_file.exists():
        try:
            load_proto(spm_file.read_bytes())
            return "sentencepiece"
        except ValueError:  # a unigram SentencePiece: not spliceable as BPE
            pass
    data = json.loads(tok_json.read_text(encoding="utf-8"))
    if is_bytelevel(data):
        return "bytelevel"
    if is_spm_json(data):
        return "sentencepiece_json"
    raise ValueError(f"{tok_json}: model {data.get('model', {}).get('type')!r} is none of: a SentencePiece BPE "
                     "(tokenizer.model), a byte-level BPE (ByteLevel pre-tokenizer), a BPE with byte_fallback")


def expand_tokenizer(tok_dir: Path, pieces: list[str], max_added: int | None = None,
                     script: str = SCRIPTS["ko"]) -> TokenizerExpansion:
    """`script`: regex of the target script; SentencePiece-style merges must produce one of its characters."""
    family = tokenizer_family(tok_dir)
    base_json = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    n_base = next_free_id(base_json)
    if family == "sentencepiece":
        result, model = splice_spm_tokenizer(base_json, (tok_dir / "tokenizer.model").read_bytes(), pieces, max_added)
        check_ids_kept(base_json, result.tokenizer_json)
    elif family == "sentencepiece_json":
        result, model = splice_spm_json(base_json, pieces, script, max_added), None
    else:
        result, model = splice_bytelevel(base_json, pieces, max_added), None
    return TokenizerExpansion(family, result.tokenizer_json, model, result.added, result.skipped, n_base)


def base_parts(base: Tokenizer, added: list[Added]) -> dict[int, list[int]]:
    """For each added token, the base tokens that spell it (at the model level: no normaliser, so
    "▁"-pieces and byte-level strings are taken as they are)."""
    return {a.id: [t.id for t in base.model.tokenize(a.token)] for a in added}


def save_tokenizer(tok_dir: Path, exp: TokenizerExpansion, out_dir: Path) -> None:
    """Write the expanded tokenizer next to whatever else is in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tok_dir / name).exists():
            shutil.copyfile(tok_dir / name, out_dir / name)
    (out_dir / "tokenizer.json").write_text(json.dumps(exp.tokenizer_json, ensure_ascii=False), encoding="utf-8")
    if exp.spm_model is not None:
        (out_dir / "tokenizer.model").write_bytes(exp.spm_model)
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    if config.get("tokenizer_class") not in VERBATIM_CLASSES:
        config["xllava_base_tokenizer_class"] = config.get("tokenizer_class")
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["clean_up_tokenization_spaces"] = False  # True would eat spaces before punctuation on decode
    config_path.write_text(json.dumps(config, indent=1, ensure_ascii=False), encoding="utf-8")


def write_added_tsv(added: list[Added], path: Path) -> None:
    """id, kind and text of every added token (partial characters shown as their symbols)."""
    with path.open("w", encoding="utf-8") as f:
        f.write("id\tkind\ttoken\ttext\n")
        for a in added:
            text = "" if a.text is None else a.text.replace("\t", "\\t").replace("\n", "\\n")
            f.write(f"{a.id}\t{a.kind}\t{a.token}\t{text}\n")
