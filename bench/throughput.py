"""``python -m bench.throughput``: tokens per second per model, mode and input length (see ``cli.sweep``)."""

import sys

from cli.args import program

if __name__ == "__main__":
    sys.exit(program("cli.sweep", "throughput"))
