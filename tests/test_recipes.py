"""Every shipped recipe validates; overrides and errors behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from xllava.config import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.stages


def test_dotted_override_is_typed() -> None:
    recipe = load_recipe(RECIPES[0], ["instruct.lr=3e-4", "world.languages=[en, ko]"])
    assert recipe.instruct.lr == 3e-4
    assert recipe.world.languages == ["en", "ko"]


def test_typo_is_an_error_naming_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ninstruct:\n  learning_rate: 1.0\n")
    with pytest.raises(ValueError) as err:
        load_recipe(bad)
    assert "bad.yaml" in str(err.value) and "learning_rate" in str(err.value)


def test_unknown_stage_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        load_recipe(RECIPES[0], ["stages=[world, pretrain]"])
