"""``python -m bench.scaling``: doubling input lengths until each model fails (see ``cli.scaling``)."""

import sys

from cli.args import program

if __name__ == "__main__":
    sys.exit(program("cli.scaling"))
