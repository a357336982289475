"""``python -m bench.memory``: peak memory per model, mode and input length (see ``bench.cli``)."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main("memory"))
