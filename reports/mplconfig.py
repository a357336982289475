"""Matplotlib's configuration and cache directory, chosen before matplotlib is imported.

Matplotlib keeps its font cache in ``$MPLCONFIGDIR`` or ``~/.config/matplotlib`` (``~/.cache/matplotlib``
for the cache). Where that cannot be written (a read-only HOME: a container, a CI sandbox) it prints two
warnings on every import and rebuilds the cache in a new temporary directory each time. Here, when
``MPLCONFIGDIR`` is unset and the default cannot be written, it is set to ``<tmp>/matplotlib-<uid>``
(made private to the user), which later report builds reuse.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def writable(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (made if missing): tried, since ``os.access``
    answers yes to root even where the filesystem refuses."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def choose_config_dir() -> Path | None:
    """Set ``MPLCONFIGDIR`` to a writable private directory when matplotlib's default is not writable;
    returns the directory set (None when nothing was changed)."""
    if os.environ.get("MPLCONFIGDIR"):
        return None
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no user entry
        home = Path("/nonexistent")
    defaults = [Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib",
                Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"]
    if all(writable(path) for path in defaults):
        return None
    fallback = Path(tempfile.gettempdir()) / f"matplotlib-{os.getuid()}"
    try:
        fallback.mkdir(mode=0o700, exist_ok=True)
    except OSError:  # no writable temporary directory either: matplotlib's own fallback and warnings
        return None
    os.environ["MPLCONFIGDIR"] = str(fallback)
    return fallback


choose_config_dir()
