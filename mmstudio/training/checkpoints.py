"""Which checkpoint of a run is the latest complete one, and writing the final model atomically.

A training run's folder holds the final model (loadable as is) and `checkpoints/`
with HF Trainer's `checkpoint-N` folders. Trainer neither flushes its files to
the disk nor checks them, so after Trainer has written one we flush every file
and the folder, then write MANIFEST (each file's size and the run's settings)
last: a checkpoint is complete when its manifest matches the files, its
safetensors headers account for every byte and its torch files are whole zips.
A crash or power cut mid-save, or a full disk, leaves one that fails those
checks, and resuming falls back to the one before. Checkpoints written before
manifests existed are checked by their headers and zips alone.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from mmstudio.storage import fsync_path, fsync_tree, share_files, write_json_atomic

CHECKPOINTS = "checkpoints"
RUN_RECORD = "mmstudio.json"
MANIFEST = "mmstudio-checkpoint.json"
DAMAGED_PREFIX = "damaged-"  # not "checkpoint-*": neither we nor Trainer's rotation take it for a checkpoint


def checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def is_complete(path: Path) -> bool:
    return checkpoint_problem(path) is None


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (None: it can), in words fit for a message."""
    path = Path(path)
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json is missing or unreadable: the save did not finish"
    if not (path / "config.json").is_file():
        return "config.json is missing"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no .safetensors weights"
    manifest = read_manifest(path)
    if manifest is not None:
        for name, size in sorted(manifest.get("files", {}).items()):
            try:
                actual = (path / name).stat().st_size
            except OSError:
                return f"{name} is missing"
            if actual < size:
                return f"{name} is truncated ({actual} of {size} bytes)"
            if actual != size:
                return f"{name} is {actual} bytes, {size} were written"
    for file in weights:
        problem = safetensors_problem(file)
        if problem:
            return f"{file.name} {problem}"
    for file in sorted([*path.glob("*.pt"), *path.glob("*.pth")]):
        problem = torch_file_problem(file)
        if problem:
            return f"{file.name} {problem}"
    return None


def safetensors_problem(file: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then exactly the bytes it lists."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"is truncated ({size} bytes, not even a header)"
            length = int.from_bytes(head, "little")
            if length > size - 8:
                return f"is truncated ({size} bytes, its header alone needs {8 + length})"
            header = json.loads(handle.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        return f"is unreadable ({type(exc).__name__})"
    if size != 8 + length + end:
        return f"is truncated ({size} of {8 + length + end} bytes)" if size < 8 + length + end \
            else f"has {size - 8 - length - end} bytes more than its tensors"
    return None


def torch_file_problem(file: Path) -> str | None:
    """torch.save writes a zip whose directory comes last: a cut-off file has none."""
    try:
        with zipfile.ZipFile(file) as archive:
            entries = archive.infolist()
        size = file.stat().st_size
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        return f"is truncated or not a torch file ({exc})"
    if any(e.header_offset + e.compress_size > size for e in entries):
        return "is truncated"
    return None


def read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def seal_checkpoint(path: Path, settings: dict) -> None:
    """Make a checkpoint Trainer has just written durable, then mark it complete (the manifest, last)."""
    path = Path(path)
    share_files(path)
    fsync_tree(path)
    files = {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file() and p.name != MANIFEST}
    write_json_atomic(path / MANIFEST, {"version": 1, "files": files, "settings": settings})
    fsync_path(path)


def checkpoints_newest_first(run: Path) -> list[Path]:
    folder = Path(run) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0]
    return sorted(found, key=checkpoint_step, reverse=True)


def resume_point(run: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the newest complete checkpoint or None, [(each newer damaged one, why)])."""
    damaged = []
    for path in checkpoints_newest_first(run):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, damaged
        damaged.append((path, problem))
    return None, damaged


def latest_checkpoint(run: Path) -> Path | None:
    return resume_point(run)[0]


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint out of the way (kept for a look, never resumed from or rotated)."""
    target = path.with_name(DAMAGED_PREFIX + path.name)
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def publish_model(staging: Path, out: Path) -> None:
    """Move a fully written model folder's files into `out`, weights last of the model files.

    Each file lands with os.replace; the run record, written last by the caller,
    marks the folder as finished.
    """
    out.mkdir(parents=True, exist_ok=True)
    share_files(staging)
    fsync_tree(staging)  # on the disk before any replaces an older good file
    files = sorted(staging.iterdir(), key=lambda p: (p.suffix == ".safetensors", p.name))
    for item in files:
        os.replace(item, out / item.name)
    fsync_path(out)
    shutil.rmtree(staging, ignore_errors=True)


def read_run_record(run: Path) -> dict:
    try:
        return json.loads((Path(run) / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def store_half(folder: Path) -> None:
    """Keep the shipped weights in fp16 (half the size in the repository and the installer).

    The config still says float32, so every loader (ours, or a plain from_pretrained) computes in
    float32; the figures on the model card are measured on these very files.
    """
    from safetensors.torch import load_file, save_file

    for file in folder.glob("model*.safetensors"):
        tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(file)).items()}
        save_file(tensors, str(file), metadata={"format": "pt"})


def publish_half(trained: Path, target: Path) -> None:
    """A trained model's files copied into `target` (emptied first), its weights stored in fp16 (store_half)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in Path(trained).iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
    store_half(target)
