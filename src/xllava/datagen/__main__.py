"""`python -m xllava.datagen ...`: the `xllava datagen` commands without the rest of the CLI's imports."""

from xllava.datagen.cli import app

app(prog_name="xllava datagen")
