"""`python -m xllava.world ...`: the `xllava world` commands (what the pipeline runs the teacher with)."""

from xllava.cli import world_app

world_app(prog_name="xllava world")
