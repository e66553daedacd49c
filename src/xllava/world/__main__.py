"""`python -m xllava.world ...`: the `xllava world` commands without the rest of the CLI's imports."""

from xllava.world_cli import app

app(prog_name="xllava world")
