"""``python -m bench.rouge``: same-budget fine-tuning and ROUGE across input lengths (see ``cli.rouge``)."""

import sys

from cli.args import program

if __name__ == "__main__":
    sys.exit(program("cli.rouge"))
