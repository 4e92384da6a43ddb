"""``python -m geodata.cli``: the same as the ``gridmap`` command."""

import sys

from geodata.cli import main

sys.exit(main(prog_name="gridmap"))
