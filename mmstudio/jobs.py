"""Fine-tuning jobs as subprocesses: prepare (validate, build argv), run, stop, kill, remember.

A job is `mmstudio train ... --progress json` in its own process session, so
Stop (SIGINT: save a checkpoint and end) and Kill (SIGKILL) reach every process
it started. Its stdout is JSON lines, read on a thread and handed to a callback;
the GUI turns them into signals, the tests read them directly. Past jobs are
kept in a JSON file so their curves and metrics survive a restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from mmstudio.errors import MMStudioError
from mmstudio.models.base import Task
from mmstudio.training.checkpoints import latest_checkpoint, write_json_atomic
from mmstudio.training.run import PreparedJob, TrainConfig, prepare

Listener = Callable[[dict], None]


def mmstudio_command(*args: str) -> list[str]:
    """How to start an `mmstudio` subcommand: the frozen app's own binary, or this Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "mmstudio", *args]


def train_command() -> list[str]:
    return mmstudio_command("train")


def generate_command(out: Path, count: int, seed: int, *, new_concepts: bool = False) -> list[str]:
    """`mmstudio world generate`, optionally with the shapes and colors the built-in models never saw."""
    from mmstudio.world import COLORS, EXTRA_COLORS, EXTRA_SHAPES, SHAPES

    argv = mmstudio_command("world", "generate", "--out", str(out), "--count", str(count), "--seed", str(seed),
                            "--workers", "2")
    if new_concepts:
        argv += ["--shapes", ",".join(SHAPES + EXTRA_SHAPES), "--colors", ",".join(COLORS + EXTRA_COLORS)]
    return argv


def build_argv(config: TrainConfig) -> list[str]:
    argv = train_command() + ["--task", Task(config.task).value, "--data", str(config.data), "--out",
                              str(config.out), "--progress", "json"]
    options = [("--base", config.base), ("--steps", config.steps), ("--batch-size", config.batch_size),
               ("--lr", config.learning_rate), ("--seed", config.seed), ("--eval-data", config.eval_data),
               ("--eval-every", config.eval_every or None), ("--save-every", config.save_every),
               ("--log-every", config.log_every), ("--max-minutes", config.max_minutes),
               ("--lora-rank", config.lora_rank if config.lora else None), ("--threads", config.threads),
               ("--size", config.size if config.base == "scratch" else None)]
    if config.steps is None:
        options.append(("--epochs", config.epochs))
    for flag, value in options:
        if value is not None:
            argv += [flag, str(value)]
    if config.lora:
        argv.append("--lora")
    if config.resume:
        argv.append("--resume")
    if config.grounding is not None:
        argv.append("--grounding" if config.grounding else "--no-grounding")
    return argv


@dataclass(frozen=True)
class Launch:
    """A checked job, ready to start: nothing runs until `start`."""

    config: TrainConfig
    argv: tuple[str, ...]
    summary: dict


def prepare_launch(config: TrainConfig) -> Launch:
    """Validate the data and the base model and build the command (raises MMStudioError)."""
    job: PreparedJob = prepare(config)
    return Launch(job.config, tuple(build_argv(job.config)), job.summary())


class JobProcess:
    """A running mmstudio subcommand; `listener` gets every event dict (on the reader thread).

    `command` is a prepared training `Launch`, or any mmstudio command line (`generate_command`).
    Lines that are not JSON arrive as {"event": "output", "text": ...}; the last event is always
    {"event": "exit", "returncode": ...}, with the end of stderr when it failed without saying why.
    """

    def __init__(self, command: Launch | Sequence[str], listener: Listener, *, env: dict | None = None):
        argv = command.argv if isinstance(command, Launch) else tuple(command)
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
    argv: list[str] = field(default_factory=list)
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
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mmstudio" / "jobs.json"


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
                record = JobRecord(**item)
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
                           out=str(config.out), base=config.base, created=time.time(), argv=list(launch.argv))
        self.records[record.id] = record
        self.save()
        return record

    def ordered(self) -> list[JobRecord]:
        return sorted(self.records.values(), key=lambda r: r.created, reverse=True)


def resume_config(record: JobRecord, **changes) -> TrainConfig:
    """The config that continues a past job from its latest checkpoint."""
    from mmstudio.cli import build_parser
    from mmstudio.cli.train import config_from_args

    args = build_parser().parse_args(record.argv[record.argv.index("train"):])
    if record.latest_checkpoint is None:
        raise MMStudioError(f"{record.out}: no complete checkpoint to resume from")
    return replace(config_from_args(args), resume=True, **changes)
