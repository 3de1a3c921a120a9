"""The inference worker: one long-lived QThread that owns the engine and its models.

The GUI thread never touches a model. It submits typed requests (mmstudio.requests)
and gets back a `Ticket`: that request's own started, progress, finished, failed
and cancelled signals (superqt's `thread_worker` shape), so whoever asked is the
only one who listens. Requests queue in the worker thread's event loop and run
one at a time; a ticket's cancel token can be set at any moment (Esc) and is
checked between steps.

Core work that needs no model (checking a dataset, preparing a training job,
saving files) runs through `InferenceClient.run` on a pool thread instead, with
the same kind of ticket, so it never waits behind a long captioning batch and
never runs on the GUI thread.
"""

from __future__ import annotations

import threading
import traceback
from typing import Callable

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from mmstudio import preload
from mmstudio.engine import Engine
from mmstudio.errors import CancelledError, MMStudioError
from mmstudio.gui.qt_errors import describe
from mmstudio.models.base import LoadOptions, Task
from mmstudio.requests import (
    AskRequest,
    CancelToken,
    CaptionRequest,
    LoadModelRequest,
    MapRequest,
    MatchRequest,
    Request,
    SearchRequest,
    execute,
    next_id,
)


class Ticket(QObject):
    """One piece of submitted work. Exactly one of finished, failed or cancelled is emitted, then ended.

    Signals are emitted on the GUI thread, in the order the work produced them.
    """

    started = Signal(str)  # what is happening, for a status line
    progress = Signal(int, int)  # (done, total)
    text = Signal(int, str)  # (index of the image or 0, its caption or answer so far) from a chat model
    finished = Signal(object)  # the Outcome (or a background call's return value)
    failed = Signal(object)  # the exception; a bug (not an MMStudioError) carries `details`
    cancelled = Signal()
    ended = Signal()  # after any of the three above

    def __init__(self, request, token: CancelToken, parent: QObject | None = None):
        super().__init__(parent)
        self.request = request
        self._token = token
        self.done = False
        self.outcome = None
        self.error: BaseException | None = None

    @property
    def id(self) -> int:
        return self.request.id

    def cancel(self) -> None:
        """Ask the work to stop; harmless once it has ended."""
        self._token.cancel()

    def _end(self, signal, *payload) -> None:
        if self.done:  # the worker reports each request once; a second report would be a bug upstream
            return
        self.done = True
        signal.emit(*payload)
        self.ended.emit()


class _Worker(QObject):
    """Lives in the worker thread; its slots run there, in submission order."""

    finished = Signal(int, object)  # (request id, Outcome)
    failed = Signal(int, object)  # (request id, exception)
    cancelled = Signal(int)
    progress = Signal(int, int, int)  # (request id, done, total)
    text = Signal(int, int, str)  # (request id, index, the text so far)
    started = Signal(int, str)  # (request id, what is happening)

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
            self.started.emit(request.id, _describe(request, self.engine))
            outcome = execute(self.engine, request, token,
                              progress=lambda done, total: self.progress.emit(request.id, done, total),
                              stream=lambda index, text: self.text.emit(request.id, index, text))
            self.finished.emit(request.id, outcome)
        except CancelledError:
            self.cancelled.emit(request.id)
        except MMStudioError as exc:
            self.failed.emit(request.id, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker: report it and go on
            exc.details = traceback.format_exc()
            self.failed.emit(request.id, exc)
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
            preload.ensure()  # the app's launch may still be importing torch; if it did not start, start it
            self.engine = Engine(self._options)

    @Slot()
    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.unload_all()

    def loaded_models(self) -> list[str]:
        """Names of the models the engine holds (none before the first request)."""
        engine = self.engine
        return [adapter.info.name for adapter in engine.loaded()] if engine is not None else []


_TASK_OF = {CaptionRequest: (Task.CAPTION, "captioning"), AskRequest: (Task.VQA, "answering"),
            MatchRequest: (Task.ITM, "scoring"), SearchRequest: (Task.ITM, "searching"),
            MapRequest: (Task.ITM, "mapping")}


def _describe(request: Request, engine: Engine) -> str:
    """What the worker is doing now, for a status line: a model's first use says it is loading (seconds)."""
    if isinstance(request, LoadModelRequest):
        return f"Loading {request.name} on {request.options.device} ({request.options.dtype})…"
    task, doing = _TASK_OF.get(type(request), (None, "working"))
    if task is not None:
        name = str(request.model or engine.model_name(task))
        if name not in {adapter.info.name for adapter in engine.loaded()}:
            return f"Loading {name} (its first use), then {doing}…"
    return f"{doing.capitalize()}…"


class BackgroundCall:
    """A plain core function to run off the GUI thread (no model involved): the 'request' of its ticket."""

    def __init__(self, what: str, function: Callable, args: tuple, kwargs: dict, cancellable: bool = False):
        self.id = next_id()
        self.what = what
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.cancellable = cancellable  # the function takes cancel=, a check that raises CancelledError

    def __repr__(self) -> str:
        return f"BackgroundCall({self.what!r})"


class _CallSignals(QObject):
    finished = Signal(int, object)
    failed = Signal(int, object)
    cancelled = Signal(int)
    started = Signal(int, str)


class _CallRunnable(QRunnable):
    def __init__(self, call: BackgroundCall, token: CancelToken, signals: _CallSignals):
        super().__init__()
        self.call, self.token, self.signals = call, token, signals

    def run(self) -> None:
        call, signals = self.call, self.signals
        try:
            self.token.check()
            signals.started.emit(call.id, call.what)
            extra = {"cancel": self.token.check} if call.cancellable else {}
            result = call.function(*call.args, **call.kwargs, **extra)
            signals.finished.emit(call.id, result)
        except CancelledError:
            signals.cancelled.emit(call.id)
        except MMStudioError as exc:
            signals.failed.emit(call.id, exc)
        except Exception as exc:  # noqa: BLE001 - reported to whoever asked, like the worker's
            exc.details = traceback.format_exc()
            signals.failed.emit(call.id, exc)


class InferenceClient(QObject):
    """The GUI side: submit work and get a ticket back; cancel everything at once (Esc)."""

    busy_changed = Signal(bool)
    started = Signal(object, str)  # (ticket, what is happening): for the window's status bar only
    _submit = Signal(object)
    _warm_up = Signal(object)
    _shutdown = Signal()

    def __init__(self, options: LoadOptions = LoadOptions(), parent: QObject | None = None):
        super().__init__(parent)
        self._tokens: dict[int, CancelToken] = {}
        self._lock = threading.Lock()
        self._tickets: dict[int, Ticket] = {}  # open tickets by request id: the client's own plumbing
        self._thread = QThread()
        self._thread.setObjectName("mmstudio-inference")
        self._worker = _Worker(self._tokens, self._lock, options)
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._warm_up.connect(self._worker.warm_up)
        self._shutdown.connect(self._worker.shutdown)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # background calls take turns: they share the disk and the GIL
        # Cancellable calls (downloads) may take minutes: they take turns on a thread of their own, so a quick
        # call (adding a correction, reading a dataset) never waits behind them.
        self._long_pool = QThreadPool(self)
        self._long_pool.setMaxThreadCount(1)
        self._calls = _CallSignals(self)
        for source in (self._worker, self._calls):
            source.finished.connect(self._on_finished)
            source.failed.connect(self._on_failed)
            source.cancelled.connect(self._on_cancelled)
            source.started.connect(self._on_started)
        self._worker.progress.connect(self._on_progress)  # background calls report no progress
        self._worker.text.connect(self._on_text)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return bool(self._tickets)

    def loaded_models(self) -> list[str]:
        """Names of the models the worker holds: a snapshot, meant for when it is idle."""
        return self._worker.loaded_models()

    def submit(self, request: Request) -> Ticket:
        """Queue a request for the model thread."""
        ticket = self._open(request)
        self._submit.emit(request)
        return ticket

    def run(self, what: str, function: Callable, *args, **kwargs) -> Ticket:
        """Run `function(*args, **kwargs)` on a background thread; its return value is the ticket's outcome."""
        return self._run(BackgroundCall(what, function, args, kwargs), self._pool)

    def run_cancellable(self, what: str, function: Callable, *args, **kwargs) -> Ticket:
        """As `run`, for a long function that takes `cancel=`: the ticket's cancel (and Esc) stop it between steps."""
        return self._run(BackgroundCall(what, function, args, kwargs, cancellable=True), self._long_pool)

    def _run(self, call: BackgroundCall, pool: QThreadPool) -> Ticket:
        ticket = self._open(call)
        pool.start(_CallRunnable(call, self._tokens[call.id], self._calls))
        return ticket

    def _open(self, request) -> Ticket:
        token = CancelToken()
        with self._lock:
            self._tokens[request.id] = token
        ticket = Ticket(request, token, self)
        was_busy = self.busy
        self._tickets[request.id] = ticket
        if not was_busy:
            self.busy_changed.emit(True)
        return ticket

    def warm_up(self, task) -> None:
        """Have the worker get the task's model ready (imports included) while the window is idle."""
        self._warm_up.emit(task)

    def cancel_all(self) -> None:
        with self._lock:
            tokens = list(self._tokens.values())
        for token in tokens:
            token.cancel()

    def _on_started(self, request_id: int, text: str) -> None:
        ticket = self._tickets.get(request_id)
        if ticket is not None:
            ticket.started.emit(text)
            self.started.emit(ticket, text)

    def _on_text(self, request_id: int, index: int, text: str) -> None:
        ticket = self._tickets.get(request_id)
        if ticket is not None:
            ticket.text.emit(index, text)

    def _on_progress(self, request_id: int, done: int, total: int) -> None:
        ticket = self._tickets.get(request_id)
        if ticket is not None:
            ticket.progress.emit(done, total)

    def _close(self, request_id: int) -> Ticket | None:
        ticket = self._tickets.pop(request_id, None)
        with self._lock:
            self._tokens.pop(request_id, None)
        if ticket is not None:
            ticket.setParent(None)  # whoever holds it keeps it; otherwise it goes with its last reference
        if not self._tickets:
            self.busy_changed.emit(False)
        return ticket

    def _on_finished(self, request_id: int, outcome) -> None:
        ticket = self._close(request_id)
        if ticket is not None:
            ticket.outcome = outcome
            ticket._end(ticket.finished, outcome)  # noqa: SLF001 - the client is the ticket's only driver

    def _on_failed(self, request_id: int, exc) -> None:
        ticket = self._close(request_id)
        if ticket is not None:
            ticket.error = exc
            ticket._end(ticket.failed, exc)  # noqa: SLF001

    def _on_cancelled(self, request_id: int) -> None:
        ticket = self._close(request_id)
        if ticket is not None:
            ticket._end(ticket.cancelled)  # noqa: SLF001

    def stop(self, timeout_ms: int = 10000) -> None:
        """Cancel what is queued, free the models and end the threads."""
        self.cancel_all()
        self._pool.waitForDone(timeout_ms)
        self._long_pool.waitForDone(timeout_ms)
        self._shutdown.emit()
        self._thread.quit()
        self._thread.wait(timeout_ms)


class OpenTickets:
    """The tickets one panel or dialog has in flight: what it owns, and nothing else."""

    def __init__(self):
        self._open: dict[int, Ticket] = {}

    def add(self, ticket: Ticket) -> Ticket:
        self._open[ticket.id] = ticket
        ticket.ended.connect(lambda: self._open.pop(ticket.id, None))
        return ticket

    def __len__(self) -> int:
        return len(self._open)

    def submit(self, client: "InferenceClient", request, *, on_finished: Callable, on_ended: Callable | None = None,
               on_error: Callable | None = None) -> Ticket:
        """Submit `request` and wire its ticket: on_finished(outcome); on_ended(request, reason) when it
        fails or is cancelled; on_error(text) also gets a failure, for the window's message bar."""
        ticket = self.add(client.submit(request))
        ticket.finished.connect(on_finished)

        def failed(exc) -> None:
            title, message = describe(exc)
            if on_ended is not None:
                on_ended(ticket.request, message)
            if on_error is not None:
                on_error(f"{title}: {message}")

        ticket.failed.connect(failed)
        if on_ended is not None:
            ticket.cancelled.connect(lambda: on_ended(ticket.request, "Cancelled."))
        return ticket

    def requests(self) -> list:
        return [ticket.request for ticket in self._open.values()]

    def cancel_all(self) -> None:
        for ticket in list(self._open.values()):
            ticket.cancel()
