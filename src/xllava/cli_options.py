"""The options every command shares: `--config FILE` and repeatable `--set field=value`, read by
`xllava.overrides.load_config` (the one parser of both) into the command's settings model."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import typer
from pydantic import BaseModel

from xllava.overrides import fields_epilog, load_config

Model = TypeVar("Model", bound=BaseModel)


def config_option(what: str) -> typer.models.OptionInfo:
    return typer.Option(None, "--config", "-c", dir_okay=False,
                        help=f"YAML with the {what} fields, or a recipe holding them (listed below)")


SetOpt = typer.Option(None, "--set", "-s", help="override one field: dotted.field=value, value read as YAML (repeatable)")
RecipeSetOpt = typer.Option(None, "--set", "-s", help="override a recipe field: section.field=value (repeatable)")


def settings(model: type[Model], config: Path | None, overrides: list[str] | None, section: str | None = None) -> Model:
    """load_config for a command: a bad file, field or value is a usage error naming it."""
    try:
        return load_config(model, config, overrides, section)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--config / --set") from None


def epilog(model: type[BaseModel], section: str | None = None) -> str:
    return fields_epilog(model, section)
