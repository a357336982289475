"""``python -m bench.memory``: peak memory per model, mode and input length (see ``cli.sweep``)."""

import sys

from cli.args import program

if __name__ == "__main__":
    sys.exit(program("cli.sweep", "memory"))
