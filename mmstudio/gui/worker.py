"""The inference worker: one long-lived QThread that owns the engine and its models.

The GUI thread never touches a model. It submits typed requests (mmstudio.requests);
they queue in the worker thread's event loop and run one at a time; each has a
cancel token the GUI can set at any moment (Esc), checked between steps.
Outcomes, progress and errors come back as signals.
"""

from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from mmstudio import preload
from mmstudio.engine import Engine
from mmstudio.errors import CancelledError, MMStudioError
from mmstudio.models.base import LoadOptions
from mmstudio.requests import CancelToken, LoadModelRequest, Request, execute


class _Worker(QObject):
    """Lives in the worker thread; its slots run there, in submission order."""

    finished = Signal(object)  # an Outcome
    failed = Signal(object, object)  # (request, exception)
    cancelled = Signal(object)  # request
    progress = Signal(int, int, int)  # (request id, done, total)
    started = Signal(object, str)  # (request, what is happening, for the status bar)

    def __init__(self, tokens: dict[int, CancelToken], lock: threading.Lock, options: LoadOptions):
        super().__init__()
        self._tokens = tokens
        self._lock = lock
        self._options = options
        self.engine: Engine | None = None

    @Slot(object)
    def run(self, request: Request) -> None:
        with self._lock:
            token = self._tokens.get(request.id) or CancelToken()
        try:
            if token.cancelled:
                raise CancelledError("cancelled before it started")
            self._ensure_engine()
            self.started.emit(request, _describe(request, self.engine))
            outcome = execute(self.engine, request, token,
                              progress=lambda done, total: self.progress.emit(request.id, done, total))
            self.finished.emit(outcome)
        except CancelledError:
            self.cancelled.emit(request)
        except MMStudioError as exc:
            self.failed.emit(request, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker: report it and go on
            exc.details = traceback.format_exc()
            self.failed.emit(request, exc)
        finally:
            with self._lock:
                self._tokens.pop(request.id, None)

    @Slot(object)
    def warm_up(self, task) -> None:
        """Import torch and transformers and load the task's model before anyone asks.

        A failure here is not reported: the first real request meets it again and reports it."""
        try:
            self._ensure_engine()
            self.engine.adapter(task)
        except Exception:  # noqa: BLE001,S110 - see the docstring
            pass

    def _ensure_engine(self) -> None:
        if self.engine is None:
            preload.wait()  # the app's launch may still be importing torch on another thread
            self.engine = Engine(self._options)

    @Slot()
    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.unload_all()


def _describe(request: Request, engine: Engine) -> str:
    if isinstance(request, LoadModelRequest):
        return f"Loading {request.name} on {request.options.device} ({request.options.dtype})…"
    kind = type(request).__name__.replace("Request", "").lower()
    return f"Working: {kind}…"


class InferenceClient(QObject):
    """The GUI side: submit, cancel, and relay the worker's signals."""

    finished = Signal(object)
    failed = Signal(object, object)
    cancelled = Signal(object)
    progress = Signal(int, int, int)
    started = Signal(object, str)
    busy_changed = Signal(bool)
    _submit = Signal(object)
    _warm_up = Signal(object)
    _shutdown = Signal()

    def __init__(self, options: LoadOptions = LoadOptions(), parent: QObject | None = None):
        super().__init__(parent)
        self._tokens: dict[int, CancelToken] = {}
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._thread = QThread()
        self._thread.setObjectName("mmstudio-inference")
        self._worker = _Worker(self._tokens, self._lock, options)
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._warm_up.connect(self._worker.warm_up)
        self._shutdown.connect(self._worker.shutdown)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._worker.progress.connect(self.progress)
        self._worker.started.connect(self.started)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def submit(self, request: Request) -> int:
        with self._lock:
            self._tokens[request.id] = CancelToken()
        was_busy = self.busy
        self._pending.add(request.id)
        if not was_busy:
            self.busy_changed.emit(True)
        self._submit.emit(request)
        return request.id

    def warm_up(self, task) -> None:
        """Have the worker get the task's model ready (imports included) while the window is idle."""
        self._warm_up.emit(task)

    def cancel(self, request_id: int) -> None:
        with self._lock:
            token = self._tokens.get(request_id)
        if token is not None:
            token.cancel()

    def cancel_all(self) -> None:
        with self._lock:
            tokens = list(self._tokens.values())
        for token in tokens:
            token.cancel()

    def _done(self, request) -> None:
        self._pending.discard(request.id)
        if not self._pending:
            self.busy_changed.emit(False)

    def _on_finished(self, outcome) -> None:
        self._done(outcome.request)
        self.finished.emit(outcome)

    def _on_failed(self, request, exc) -> None:
        self._done(request)
        self.failed.emit(request, exc)

    def _on_cancelled(self, request) -> None:
        self._done(request)
        self.cancelled.emit(request)

    def stop(self, timeout_ms: int = 10000) -> None:
        """Cancel what is queued, free the models and end the thread."""
        self.cancel_all()
        self._shutdown.emit()
        self._thread.quit()
        self._thread.wait(timeout_ms)
