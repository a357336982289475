"""Ctrl-C and SIGTERM noted when they arrive, delivered where the program can take them: one home for both
the simulated step (``bench.gpusim``) and the capacity bisection (``cli.capacity``).

Why: a Python signal handler runs at whatever bytecode comes next. During and between simulated steps that
is often a weakref callback of a freed fake tensor (``bench.gpusim.LiveBytes``, one per freed storage, and
the fake mode's own weak tables), and an exception raised in a weakref callback is printed and dropped by
Python (``PyErr_WriteUnraisable``): a Ctrl-C there was lost and the work ran on to its end. So while
``DEFERRED`` is open the handler only notes the signal; ``deliver()`` raises it at a safe point.
"""

from __future__ import annotations

import signal
import threading


class DeferredSignals:
    """While open (main thread only), SIGINT and SIGTERM are noted instead of handled, and ``deliver()``
    runs the handler that was in place before the outermost opening (Ctrl-C's ``KeyboardInterrupt``,
    ``cli.args``' ``Terminated``: exit statuses 130 / 143) where it is called, and on leaving each opening.

    Re-entrant: openings nest (the capacity bisection around each probe's simulated step); only the
    outermost one takes and gives back the handlers, so a signal noted inside is delivered with the
    handler of the program, never with another opening's note. Signals whose handler is not a Python
    function (ignored, default) are left alone. Nothing here depends on timing: a note stays until a
    safe point delivers it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.pending: list[int] = []  #: signal numbers noted and not yet delivered, in arrival order
        self._previous: dict[int, object] = {}
        self._depth = 0

    def __enter__(self) -> DeferredSignals:
        if not _main_thread():  # Python runs handlers in the main thread only
            return self
        self._depth += 1
        if self._depth == 1:
            for signum in self.SIGNALS:
                if callable(signal.getsignal(signum)):
                    self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.pending.append(signum)

    def deliver(self) -> None:
        """Run the original handler of the first signal noted (it raises), once; nothing if none, or if
        called outside the main thread (the note waits for the main thread's next safe point)."""
        if self.pending and _main_thread():
            signum = self.pending[0]
            self.pending.clear()
            self._previous[signum](signum, None)

    def __exit__(self, *exc) -> None:
        if not _main_thread():
            return
        self._depth -= 1
        previous = self._previous
        if self._depth == 0:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        try:
            self.deliver()  # a signal noted during a failing step still ends the program
        finally:
            if self._depth == 0:
                previous.clear()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


#: the process's one deferral (signal handlers are per process): ``with DEFERRED:``, ``DEFERRED.deliver()``
DEFERRED = DeferredSignals()
