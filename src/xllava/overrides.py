"""One way to configure every command: a YAML file (`--config`) and repeatable `--set field=value`.

A command's settings are one pydantic model (`VocabConfig`, `LmConfig`, `DatagenConfig`,
`ServeConfig`, ...). `--config` names a YAML file holding that model's fields, or a recipe whose
section (`vocab:`, `lm:`, ...) holds them; each `--set dotted.field=value` then replaces one field,
its value read as YAML (`-s lr=1e-4`, `-s "languages=[en, ko]"`, `-s teacher.api_key_env=null`).
Recipes are read the same way (`xllava run RECIPE -s instruct.lr=1e-4`). A leaf module: yaml and
pydantic only.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """tree[a][b][c] = value for "a.b.c", creating sections on the way."""
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {dotted}: {key!r} is not a section")
    node[keys[-1]] = value


def apply_overrides(tree: dict[str, Any], overrides: list[str] | None, section: str | None = None) -> dict[str, Any]:
    """Apply `dotted.field=value` items to tree (values parsed as YAML scalars or lists). With a
    `section`, a leading "section." is accepted and dropped, so `-s lm.lr=1e-4` and `-s lr=1e-4`
    mean the same to the `lm` commands."""
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r} must look like field=value (dotted for nested fields)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if section and key.startswith(f"{section}."):
            key = key.removeprefix(f"{section}.")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {item!r}: the value is not YAML ({err})") from err
        set_dotted(tree, key, value)
    return tree


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: expected a mapping of fields, got {type(tree).__name__}")
    return tree


def load_config(model: type[Model], config: Path | None, overrides: list[str] | None,
                section: str | None = None) -> Model:
    """The command's settings: `config` (the model's own fields, or a recipe whose `section` holds
    them), then the overrides. Errors name the file or `--set` and the field."""
    tree: dict[str, Any] = {}
    if config is not None:
        tree = read_yaml(Path(config))
        if section and isinstance(tree.get(section), dict):
            tree = dict(tree[section])
    tree = apply_overrides(tree, overrides, section)
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        source = f"{config} and --set" if config and overrides else str(config) if config else "--set"
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors())
        raise ValueError(f"{source}: {problems}") from None


# ---------------------------------------------------------------- --help: every field and its meaning

_FIRST_SENTENCE = re.compile(r"(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z(])")
_FIELD = re.compile(r"^    (\w+)\s*:[^=]*(?:=\s*(.*?))?\s*(?:#\s*(.*))?$")


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment in the class source: the one on its line, else the block just above."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        if line.startswith("    #") and not line.startswith("     "):
            above.append(stripped.lstrip("# "))
            continue
        match = _FIELD.match(line)
        if match and not stripped.startswith(("def ", "@", "return")):
            comment = (match.group(3) or "").strip() or " ".join(above)
            found[match.group(1)] = _FIRST_SENTENCE.split(comment)[0].rstrip(".")
        above = []
    return found


def field_lines(model: type[BaseModel], prefix: str = "") -> list[str]:
    """`name = default: meaning` for every field, nested models flattened with dotted names."""
    lines = []
    meanings: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            meanings.update(_comments(cls))
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += field_lines(annotation, f"{prefix}{name}.")
            continue
        if info.is_required():
            meaning = meanings.get(name) or (info.description or "")
            lines.append(f"{prefix}{name} (required)" + (f": {meaning}" if meaning else ""))
            continue
        default = info.get_default(call_default_factory=True)
        shown = yaml.safe_dump(default.model_dump(mode="json") if isinstance(default, BaseModel) else
                               _plain(default), default_flow_style=True, width=10_000).strip()
        shown = shown.removesuffix("\n...").removesuffix(" ...")
        meaning = meanings.get(name) or (info.description or "")
        lines.append(f"{prefix}{name} = {shown}" + (f": {meaning}" if meaning else ""))
    return lines


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _plain(v.model_dump(mode="json") if isinstance(v, BaseModel) else v) for k, v in value.items()}
    return value


def fields_epilog(model: type[BaseModel], section: str | None = None) -> str:
    """The text `--help` shows after the options: every field `--set` and `--config` accept."""
    head = f"Fields for --config / --set (a recipe's `{section}:` section works too):" if section \
        else "Fields for --config / --set:"
    return "\n".join([head, *field_lines(model)])
