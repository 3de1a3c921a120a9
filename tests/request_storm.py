"""A seeded storm of random requests through the real inference worker (InferenceClient).

`Storm.run` keeps one to four requests queued, cancels some (at once, before they
start; when they start; at a random later moment; all at once) and records every
signal. It checks each request as its signals arrive, keeping only counts, so the
outcomes (attention maps and all) do not inflate the memory it measures. Invariants:
exactly one of finished / failed / cancelled per request; a request that never
started was cancelled, and only by us; a request not cancelled ends as its plan
expects (tests/storm_world.py); progress only between start and end.
Used by tests/test_worker_reliability.py and bench/worker_stress.py.
"""

from __future__ import annotations

import gc
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from PySide6.QtCore import QEventLoop, QObject, QTimer

from mmstudio.models.base import Task
from mmstudio.requests import LoadModelRequest
from tests.storm_world import Expect, Plan, World, check_failure, check_result, random_plan

# No signal for this long while requests are pending means the worker hangs (a bound, not a speed check).
HANG_SECONDS = 300


def rss_bytes() -> int:
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return psutil.Process().memory_info().rss


@dataclass
class Track:
    plan: Plan
    cancel: str | None  # planned: "at-once", "on-start", "later" or None
    cancelled_by: str | None = None  # how we did cancel it, once we did ("all": cancel_all)
    started: bool = False
    ends: list[str] = field(default_factory=list)  # "finished", "failed:<Error>", "cancelled before start", ...
    ticks_left: int = 0  # for "later": loop turns until the cancel
    ticket: object = None  # the client's Ticket for this request


@dataclass
class Report:
    requests: int
    outcomes: Counter  # "finished", "failed:<Error>", "cancelled before start" / "... while running" -> count
    kinds: Counter  # request type -> count
    cancels: Counter  # how we cancelled (at-once, on-start, later, all) -> count
    problems: list[str]
    rss_warm: int  # after the warm-up requests
    rss_end: int
    seconds: float

    @property
    def rss_growth(self) -> int:
        return self.rss_end - self.rss_warm


class Storm(QObject):
    def __init__(self, client, world: World, seed: int):
        super().__init__()
        self.client = client
        self.world = world
        # Everything random is drawn when a request is sent, never per turn of the loop (whose count
        # depends on the machine's speed): the same seed sends the same requests and cancels.
        self.plans = random.Random(seed)
        self.tracks: dict[int, Track] = {}
        self.problems: list[str] = []
        self.ended = 0
        self.busy_flags: list[bool] = []
        self._last_signal = time.monotonic()
        self._loop = QEventLoop()
        self._tick = QTimer(self)
        self._tick.setSingleShot(True)
        self._tick.setInterval(20)
        self._tick.timeout.connect(self._loop.quit)
        client.busy_changed.connect(self.busy_flags.append)

    # ------------------------------------------------------------ driving

    def run(self, count: int, warmup: int) -> Report:
        """Submit `count` random requests; measure RSS once `warmup` of them have ended, and at the end."""
        start = time.perf_counter()
        rss_warm = None
        submitted, depth = 0, 1
        while submitted < count or self._open():
            if rss_warm is None and self.ended >= warmup:
                rss_warm = _settled_rss()
            if submitted < count and len(self._open()) < depth:
                self._submit(random_plan(self.plans, self.world))
                submitted += 1
                depth = self.plans.randint(1, 4)  # requests in flight before the next one is sent
                continue
            self._wait()
            self._cancel_later_ones()
        self._flush()
        rss_end = _settled_rss()
        self._final_checks()
        kinds = Counter(type(track.plan.request).__name__.replace("Request", "") for track in self.tracks.values())
        return Report(count, Counter(end for t in self.tracks.values() for end in t.ends), kinds,
                      Counter(t.cancelled_by for t in self.tracks.values() if t.cancelled_by), self.problems,
                      rss_warm if rss_warm is not None else rss_end, rss_end, time.perf_counter() - start)

    def load_first_models(self) -> None:
        """Load the first good model of each task (a checkout may have no built-in models to fall back on)."""
        for task in Task:
            self.wait_for(self.submit(Plan(LoadModelRequest(task, self.world.models[task][0]), Expect())))

    def submit(self, plan: Plan, cancel: str | None = None) -> int:
        """Submit one planned request (outside the random flow), tracked like the others."""
        # Each request's own ticket carries its signals: the storm checks that none reaches another's.
        request = plan.request
        ticket = self.client.submit(request)
        self.tracks[request.id] = Track(plan, cancel, ticket=ticket)
        ticket.started.connect(lambda _text: self._on_started(request))
        ticket.progress.connect(lambda done, total: self._on_progress(request.id, done, total))
        ticket.finished.connect(lambda outcome: self._on_end(request, "finished", outcome, outcome.request))
        ticket.failed.connect(lambda error: self._on_end(request, f"failed:{type(error).__name__}", error))
        ticket.cancelled.connect(lambda: self._on_end(request, "cancelled", None))
        return request.id

    def wait_for(self, request_id: int) -> None:
        while not self.tracks[request_id].ends:
            self._wait()

    def _submit(self, plan: Plan) -> None:
        roll = self.plans.random()
        cancel = "at-once" if roll < 0.08 else "on-start" if roll < 0.14 else "later" if roll < 0.2 else None
        request_id = self.submit(plan, cancel)
        track = self.tracks[request_id]
        if cancel == "at-once":  # still queued behind the others, unless the worker was idle
            self._cancel(request_id, "at-once")
        elif cancel == "later":
            track.ticks_left = self.plans.randint(0, 30)
        roll = self.plans.random()
        if roll < 0.01:
            for other in self._open().values():
                other.cancelled_by = other.cancelled_by or "all"
            self.client.cancel_all()
        elif roll < 0.05:  # cancelling a request long over: nothing may happen
            over = [t for t in self.tracks.values() if t.ends]
            if over:
                self.plans.choice(over[-20:]).ticket.cancel()

    def _cancel(self, request_id: int, how: str) -> None:
        track = self.tracks[request_id]
        track.cancelled_by = track.cancelled_by or how
        track.ticket.cancel()

    def _cancel_later_ones(self) -> None:
        for request_id, track in self._open().items():
            if track.cancel == "later" and not track.cancelled_by:
                track.ticks_left -= 1
                if track.ticks_left < 0:
                    self._cancel(request_id, "later")

    def _wait(self) -> None:
        """Deliver the worker's signals: return after the next one, or after one tick of the timer."""
        self._tick.start()
        self._loop.exec()
        if self._open() and time.monotonic() - self._last_signal > HANG_SECONDS:
            pending = [repr(track.plan.request)[:200] for track in self._open().values()]
            raise AssertionError(f"the worker hangs: no signal for {HANG_SECONDS} s; pending: {pending}")

    def _flush(self) -> None:
        # The worker runs requests in order and signals in order: once a last request has ended,
        # every signal of the earlier ones has been delivered, duplicates included.
        sentinel = self.submit(Plan(LoadModelRequest(Task.CAPTION, self.world.models[Task.CAPTION][0]), Expect()))
        self.wait_for(sentinel)

    def _open(self) -> dict[int, Track]:
        return {request_id: track for request_id, track in self.tracks.items() if not track.ends}

    # ------------------------------------------------------------ signals

    def _on_started(self, request) -> None:
        self._last_signal = time.monotonic()
        track = self.tracks.get(request.id)
        if track is None:
            self.problems.append(f"started signal for an unknown request {request.id}")
            return
        if track.started or track.ends:
            self.problems.append(f"request {request.id} started twice, or after it ended")
        track.started = True
        if track.cancel == "on-start":  # it is running in the worker thread now
            self._cancel(request.id, "on-start")

    def _on_progress(self, request_id: int, done: int, total: int) -> None:
        track = self.tracks.get(request_id)
        if track is None or not track.started or track.ends or not 0 <= done <= total:
            self.problems.append(f"progress ({done}/{total}) out of place for request {request_id}")

    def _on_end(self, request, end: str, payload, answered=None) -> None:
        self._last_signal = time.monotonic()
        self._loop.quit()
        track = self.tracks.get(request.id)
        if track is None:
            self.problems.append(f"{end} for an unknown request {request.id}")
            return
        if end == "cancelled":
            end += " while running" if track.started else " before start"
        track.ends.append(end)
        self.ended += 1
        if answered is not None and answered is not request:
            self.problems.append(f"request {request.id}'s ticket delivered another request's outcome")
        problem = self._judge(track, end, payload)
        if problem:
            self.problems.append(f"request {request.id} {request!r}: {problem}")

    def _judge(self, track: Track, end: str, payload) -> str | None:
        if len(track.ends) > 1:
            return f"ended {len(track.ends)} times: {track.ends}"
        if end.startswith("cancelled"):
            return None if track.cancelled_by else "cancelled, yet nobody cancelled it"
        if not track.started:
            return f"{end} without having started"
        if end == "finished":
            return check_result(track.plan, payload)
        return check_failure(track.plan, payload)

    def _final_checks(self) -> None:
        for request_id, track in self.tracks.items():
            if len(track.ends) != 1:
                self.problems.append(f"request {request_id} ended {len(track.ends)} times: {track.ends}")
        if self.client.busy or (self.busy_flags and self.busy_flags[-1]):
            self.problems.append("the client still says it is busy")


def _settled_rss() -> int:
    gc.collect()
    return rss_bytes()
