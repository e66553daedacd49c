"""The documentation is checked like code: every `xllava ...` command line in README.md and docs/
parses against the real CLI, every relative link and anchor resolves, the site builds in strict
mode, the README stays a front door, and no commit hash sits in README, recipes or source comments."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from markdown.extensions.toc import slugify

from xllava.cli import app

try:  # typer 0.29 builds its commands on its own copy of click
    from typer import _click as click
except ImportError:
    import click

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
COMMAND_FENCE = re.compile(r"^```(?!text)[^\n]*\n(.*?)^```", re.S | re.M)  # ```text: a program's output
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")


def command_lines(text: str) -> list[str]:
    """`xllava ...` lines in fenced code blocks, continuation backslashes joined, comments dropped."""
    found = []
    for block in COMMAND_FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            # "xllava 0.51 samples/s" is a bench's output and "xllava run RECIPE [--set ...]" a
            # synopsis, not commands; a shell's "&", "|" or "&&" ends the command
            line = re.split(r" (?:&&?|\|) ?| #", line)[0].strip()
            if re.match(r"xllava [a-z]", line) and " [" not in line:
                found.append(line)
    return found


def parse_command(argv: list[str]) -> None:
    """Parse argv with the real commands, down to the leaf, without invoking anything. Path
    arguments need not exist here (the docs name the user's files): their existence check is
    switched off for the parse and restored after it."""
    command = typer.main.get_command(app)
    name = "xllava"
    while True:
        infos = [p.type_descriptor.parameter_info for p in command.params if hasattr(p, "type_descriptor")]
        saved = [getattr(info, "exists", False) for info in infos]
        try:
            for info in infos:
                info.exists = False
            ctx = command.make_context(name, list(argv))
        finally:
            for info, exists in zip(infos, saved, strict=True):
                info.exists = exists
        if not hasattr(command, "commands"):
            return
        rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        if not rest:
            raise click.UsageError(f"{name}: a subcommand is needed")
        sub_name, sub, argv = command.resolve_command(ctx, rest)
        if sub is None:
            raise click.UsageError(f"{name}: no subcommand {sub_name!r}")
        command, name = sub, f"{name} {sub_name}"


DOC_COMMANDS = [(page.relative_to(ROOT).as_posix(), line)
                for page in PAGES for line in command_lines(page.read_text(encoding="utf-8"))]


def test_the_docs_show_commands() -> None:
    assert len(DOC_COMMANDS) >= 20
    assert {shlex.split(line)[1] for _, line in DOC_COMMANDS} >= {
        "run", "vocab", "lm", "datagen", "train", "eval", "judge", "serve", "chat", "ablation", "scale"}


@pytest.mark.parametrize(("page", "line"), DOC_COMMANDS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(DOC_COMMANDS)])
def test_every_documented_command_parses(page: str, line: str) -> None:
    try:
        parse_command(shlex.split(line)[1:])
    except click.ClickException as err:
        pytest.fail(f"{page}: `{line}` does not parse: {err.format_message()}")


def test_a_wrong_command_is_caught() -> None:
    with pytest.raises(click.ClickException):
        parse_command(["serve", "model", "--no-such-option", "1"])
    with pytest.raises(click.ClickException):
        parse_command(["vocab", "grow", "x"])


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slugify(re.sub(r"[`*_]", "", h), "-") for h in HEADING.findall(text)}


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} -> {target}"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif page.is_relative_to(ROOT / "docs") and not dest.is_relative_to(ROOT / "docs"):
                broken.append(f"{where}: leaves docs/, which the site cannot follow")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no heading with that anchor")
    assert not broken, "\n".join(broken)


def test_the_readme_is_a_front_door() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_no_commit_hash_in_readme_recipes_or_source_comments() -> None:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "recipes").glob("*.yaml"))]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{n}: {m}" for m in COMMIT.findall(line)]
    for path in sorted((ROOT / "src").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            comment = line.split("#", 1)[1] if "#" in line else ""
            found += [f"{path.relative_to(ROOT)}:{n}: {m}" for m in COMMIT.findall(comment)]
    assert not found, "\n".join(found)


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                    reason="mkdocs is not installed in this environment (the dev extra installs it)")
def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "train" / "index.html").exists()
