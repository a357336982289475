"""``python -m reports build RUN_DIR ...``: a shim for ``cli.report`` (the report's command line)."""

import sys

from cli.args import program

if __name__ == "__main__":
    sys.exit(program("cli.report"))
