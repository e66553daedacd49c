"""tools/install.py hands pip's configuration to uv: where packages come from and what is allowed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "install.py"
spec = importlib.util.spec_from_file_location("xllava_install_tool", TOOL)
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)


def flag_values(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == flag]


def test_every_index_link_and_constraint_becomes_a_uv_flag():
    settings = {
        "extra-index-url": "file:///opt/a/simple\nfile:///opt/b/simple",
        "find-links": "/opt/wheels",
        "constraint": "/etc/pip/constraints.txt",
        "cert": "/etc/ssl/certs/bundle.crt",
        "default-timeout": "180",
    }
    command, env = install.uv_command(["-e", ".[dev]"], settings)
    assert command[:3] == [sys.executable, "-m", "uv"]
    assert flag_values(command, "--extra-index-url") == ["file:///opt/a/simple", "file:///opt/b/simple"]
    assert flag_values(command, "--find-links") == ["/opt/wheels"]
    assert flag_values(command, "--constraint") == ["/etc/pip/constraints.txt"]
    assert flag_values(command, "--index-strategy") == ["unsafe-best-match"]  # pip's: best across indexes
    assert flag_values(command, "--python") == [sys.executable]
    assert command[-2:] == ["-e", ".[dev]"]
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/bundle.crt"
    assert env["UV_HTTP_TIMEOUT"] == "180"


def test_pip_settings_are_read_from_pip_itself(tmp_path, monkeypatch):
    # environment variables are the highest-precedence layer of pip's configuration
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "wheels"))
    monkeypatch.setenv("PIP_CONSTRAINT", str(tmp_path / "c.txt"))
    settings = install.pip_settings()
    assert settings["find-links"] == str(tmp_path / "wheels")
    assert settings["constraint"] == str(tmp_path / "c.txt")
    # a [global] file setting is still read where the environment does not override it
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nextra-index-url = file:///opt/a/simple\n    file:///opt/b/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    assert install.pip_settings()["extra-index-url"].split() == ["file:///opt/a/simple", "file:///opt/b/simple"]


def test_sections_rank_by_pip_precedence_and_an_unknown_format_is_refused():
    listing = "\n".join([
        ":env:.find-links='/env/wheels'",
        "global.find-links='/global/wheels'",
        "global.extra-index-url='file:///a file:///b'",
        "install.constraint='/install/c.txt'",
        "download.dest='/elsewhere'",  # another command's section: not an install setting
    ])
    assert install.parse_pip_config(listing) == {
        "find-links": "/env/wheels", "extra-index-url": "file:///a file:///b", "constraint": "/install/c.txt"}
    with pytest.raises(ValueError, match="unexpected line"):
        install.parse_pip_config("find-links: /opt/wheels")
