"""Jobs as subprocesses: prepare (validate, keep the config), run, stop, kill, remember.

A job is a config (TrainConfig, GenerateConfig), never a command line: as it starts, its config is
written into its output folder (JOB_FILE) and the command is derived from that file every time
(`mmstudio train --config FILE --progress json`); nothing parses a command line back into settings.
The job store keeps the config document, and resuming is that config with `resume=True`.
(Evaluation, export and indexing run in the app's worker thread, not as jobs: they have no config file.)

A job runs in its own process session, so Stop (SIGINT: save a checkpoint and end) and Kill (SIGKILL)
reach every process it started. Its stdout is JSON lines, read on a thread and handed to a callback;
the GUI turns them into signals, the tests read them directly. Past jobs are kept in a JSON file so
their curves and metrics survive a restart.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Union

from mmstudio.errors import MMStudioError
from mmstudio.models.base import Task
from mmstudio.paths import data_dir
from mmstudio.storage import write_json_atomic
from mmstudio.training.checkpoints import latest_checkpoint
from mmstudio.training.config import JOB_FILE, TrainConfig
from mmstudio.training.run import PreparedJob, prepare
from mmstudio.world.config import GenerateConfig

Listener = Callable[[dict], None]
JobConfig = Union[TrainConfig, GenerateConfig]


def mmstudio_command(*args: str) -> list[str]:
    """How to start an `mmstudio` subcommand: the frozen app's own binary, or this Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "mmstudio", *args]


def job_file(config: JobConfig) -> Path:
    """Where a job's config is written: its output folder, so the run (or dataset) says how it was made."""
    return Path(config.out) / JOB_FILE


def job_command(config: JobConfig) -> list[str]:
    """The command that runs a job from its config file (derived, every time, from the config alone)."""
    if isinstance(config, TrainConfig):
        return mmstudio_command("train", "--config", str(job_file(config)), "--progress", "json")
    if isinstance(config, GenerateConfig):
        return mmstudio_command("world", "generate", "--config", str(job_file(config)))
    raise TypeError(f"not a job config: {config!r}")


@dataclass(frozen=True)
class Launch:
    """A checked job, ready to start: nothing is written and nothing runs until `JobProcess` starts it."""

    config: JobConfig
    summary: dict = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        return job_command(self.config)

    def write_config(self) -> Path:
        """Write the config file the command reads (atomically; raises StorageError where it cannot)."""
        return self.config.write(job_file(self.config))


def prepare_launch(config: TrainConfig) -> Launch:
    """Validate the data and the base model (raises MMStudioError); the launch holds the checked config."""
    job: PreparedJob = prepare(config)
    return Launch(job.config, job.summary())


def prepare_generate(config: GenerateConfig) -> Launch:
    """Check a world-generation config (raises SettingsError naming the setting)."""
    config.validate()
    return Launch(config)


class JobProcess:
    """A running mmstudio subcommand; `listener` gets every event dict (on the reader thread).

    Starting writes the launch's config file first (StorageError where it cannot), then runs the
    command derived from it. Lines that are not JSON arrive as {"event": "output", "text": ...}; the
    last event is always {"event": "exit", "returncode": ...}, with the end of stderr when it failed
    without saying why.
    """

    def __init__(self, launch: Launch, listener: Listener, *, env: dict | None = None):
        launch.write_config()
        argv = launch.argv
        self.launch = launch
        self.listener = listener
        self.events: list[dict] = []
        self.returncode: int | None = None
        self._stderr_tail: list[str] = []
        environment = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, env=environment, start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="mmstudio-job-reader", daemon=True)
        self._errors = threading.Thread(target=self._read_stderr, name="mmstudio-job-stderr", daemon=True)
        self._reader.start()
        self._errors.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        for line in self.process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "output", "text": line}
            self.events.append(event)
            self.listener(event)
        self.returncode = self.process.wait()
        self._errors.join(timeout=5)
        ended = {"event": "exit", "returncode": self.returncode}
        if self.returncode not in (0, None) and not any(e.get("event") == "error" for e in self.events):
            ended["stderr"] = "".join(self._stderr_tail[-20:])
        self.events.append(ended)
        self.listener(ended)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr_tail.append(line)
            del self._stderr_tail[:-200]

    def stop(self) -> None:
        """Ask for a checkpoint and a clean end (SIGINT to the process group)."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """End the job and everything it started, at once."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        self.process.wait(timeout)
        self._reader.join(timeout=10)
        return self.process.returncode

    @property
    def running(self) -> bool:
        return self.process.poll() is None


# --------------------------------------------------------------------- history


@dataclass
class JobRecord:
    id: str
    task: str
    data: str
    out: str
    base: str | None
    created: float
    status: str = "running"  # running | finished | stopped | failed | killed
    curve: list[list[float]] = field(default_factory=list)  # [step, loss]
    evals: list[dict] = field(default_factory=list)
    config: dict | None = None  # the TrainConfig document the job runs (None: a job of an older mmstudio)
    legacy_argv: list[str] = field(default_factory=list)  # such a job's command line: shown, never parsed
    message: str = ""

    @property
    def latest_checkpoint(self) -> Path | None:
        return latest_checkpoint(Path(self.out))

    def absorb(self, event: dict) -> None:
        """Fold one progress event into the record."""
        kind = event.get("event")
        if kind == "progress":
            self.curve.append([event["step"], event["loss"]])
        elif kind == "eval":
            self.evals.append({"step": event["step"], **event.get("metrics", {})})
        elif kind == "done":
            self.status = "finished" if event.get("finished") else "stopped"
        elif kind == "error":
            self.status, self.message = "failed", event.get("message", "")
        elif kind == "exit" and self.status == "running":
            code = event.get("returncode")
            self.status = "killed" if code is not None and code < 0 else "failed"
            self.message = self.message or event.get("stderr", "")[-2000:]


def default_store_path() -> Path:
    return data_dir() / "jobs.json"


class JobStore:
    """Past and running jobs, saved atomically after every change."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path or default_store_path())
        self.records: dict[str, JobRecord] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for item in data.get("jobs", []):
                record = _record_from_json(item)
                if record.status == "running":  # the app ended while it ran: it is not running now
                    record.status = "stopped" if record.latest_checkpoint else "failed"
                self.records[record.id] = record
        except (OSError, ValueError, TypeError):
            self.records = {}

    def save(self) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, {"jobs": [asdict(r) for r in self.records.values()]})

    def new(self, launch: Launch) -> JobRecord:
        config = launch.config
        record = JobRecord(id=uuid.uuid4().hex[:12], task=Task(config.task).value, data=str(config.data),
                           out=str(config.out), base=config.base, created=time.time(),
                           config=config.to_document())
        self.records[record.id] = record
        self.save()
        return record

    def ordered(self) -> list[JobRecord]:
        return sorted(self.records.values(), key=lambda r: r.created, reverse=True)


def _record_from_json(item: dict) -> JobRecord:
    """A record of jobs.json; one written before jobs kept their config has only the job's `argv`."""
    item = dict(item)
    if "argv" in item:
        # Kept to show, not parsed back into settings (a command line is an output): such a job is not
        # resumed from the app; resume_config says how to resume it from a terminal.
        item["legacy_argv"] = item.pop("argv")
    return JobRecord(**item)


def resume_config(record: JobRecord, **changes) -> TrainConfig:
    """The stored config of a past job, continuing from its latest checkpoint (`changes`: e.g. more steps)."""
    if record.config is None:
        command = shlex.join([*record.legacy_argv, "--resume"]) if record.legacy_argv else "mmstudio train --resume"
        raise MMStudioError(f"{record.out}: this job was started by an older mmstudio, which kept its command line "
                            f"instead of its settings, so the app cannot resume it. From a terminal: {command}")
    config = TrainConfig.from_document(record.config)
    if record.latest_checkpoint is None:
        raise MMStudioError(f"{record.out}: no complete checkpoint to resume from")
    return replace(config, resume=True, **changes)
