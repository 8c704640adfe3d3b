"""``python -m tinycodec``: the ``tinycodec`` command (demo, enhance, rd) where its console script is not on PATH."""

from .cli import main

main(prog_name="tinycodec")
