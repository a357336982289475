"""``python -m bench.capacity``: the longest input per model that fits a GPU (see ``cli.capacity``)."""

import sys

from cli.args import program

if __name__ == "__main__":
    sys.exit(program("cli.capacity"))
