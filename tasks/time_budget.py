"""A time limit for work that user input can make slow, such as a regular expression
that backtracks catastrophically: SIGALRM interrupts it (Python's regex engine checks for
signals as it runs), long before the task's own time limits would."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class OverBudget(Exception):
    """The work ran past its time budget."""


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise OverBudget in the block once `seconds` have passed. Signals reach the main
    thread only (a worker's task runs there): elsewhere the block runs unlimited."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
