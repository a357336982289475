"""``python -m bench.throughput``: tokens per second per model, mode and input length (see ``bench.cli``)."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main("throughput"))
