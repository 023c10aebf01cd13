"""Run blocking calls (HTTP, file decoding) off the GUI thread and hear back on it through Qt signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal


class _Relay(QObject):
    """Lives on the GUI thread; signals emitted from a pool thread are queued to it."""

    done = pyqtSignal(object)
    failed = pyqtSignal(object)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.fn, self.relay = fn, relay

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # handed to the GUI thread, which shows it
            self.relay.failed.emit(exc)
        else:
            self.relay.done.emit(result)


_pending: set[_Relay] = set()  # keeps each relay alive until its answer is delivered


def run_in_background(fn: Callable[[], Any], on_done: Callable[[Any], None],
                      on_failed: Callable[[BaseException], None] | None = None) -> None:
    """Call `fn()` on a pool thread; then `on_done(result)` or `on_failed(exc)` on the GUI thread."""
    relay = _Relay()
    _pending.add(relay)

    def finish(callback: Callable[[Any], None] | None, value: Any) -> None:
        _pending.discard(relay)
        if callback is not None:
            callback(value)

    relay.done.connect(lambda value: finish(on_done, value))
    relay.failed.connect(lambda exc: finish(on_failed, exc))
    pool().start(_Task(fn, relay))


def pool() -> QThreadPool:
    """The window's worker pool: enough threads for a submit, a result download and the queue poll at once."""
    instance = QThreadPool.globalInstance()
    if instance.maxThreadCount() < 4:
        instance.setMaxThreadCount(4)
    return instance
