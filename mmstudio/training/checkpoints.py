"""Which checkpoint of a run is the latest complete one, and writing the final model atomically.

A training run's folder holds the final model (loadable as is) and `checkpoints/`
with HF Trainer's `checkpoint-N` folders. Trainer writes `trainer_state.json`
last, so a checkpoint whose state parses is complete; a crash mid-save leaves
one without it, and that one is never taken as the latest.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

CHECKPOINTS = "checkpoints"
RUN_RECORD = "mmstudio.json"


def checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def is_complete(path: Path) -> bool:
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def latest_checkpoint(run: Path) -> Path | None:
    folder = Path(run) / CHECKPOINTS
    if not folder.is_dir():
        return None
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0]
    for path in sorted(found, key=checkpoint_step, reverse=True):
        if is_complete(path):
            return path
    return None


def write_json_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are meant to be read by anyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish_model(staging: Path, out: Path) -> None:
    """Move a fully written model folder's files into `out`, weights last of the model files.

    Each file lands with os.replace; the run record, written last by the caller,
    marks the folder as finished.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(staging.iterdir(), key=lambda p: (p.suffix == ".safetensors", p.name))
    for item in files:
        os.replace(item, out / item.name)
    shutil.rmtree(staging, ignore_errors=True)


def read_run_record(run: Path) -> dict:
    try:
        return json.loads((Path(run) / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
