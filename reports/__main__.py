"""``python -m reports build RUN_DIR ...``: a shim for ``cli.report`` (the report's command line)."""

import sys

from cli.report import main

if __name__ == "__main__":
    sys.exit(main())
