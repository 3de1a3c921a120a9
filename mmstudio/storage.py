"""Writing files a user keeps: clear errors for full, read-only or wrong disks, durable saves, ordinary modes.

Disk failures reach us as OSError (with an errno), or from writers in native code
(torch's zip writer, safetensors) as RuntimeError or their own types whose text
says nothing of the disk ("unexpected pos"). `disk_errors` turns both into one
StorageError that names the path and what to do; for the native writers it asks
the disk how much room is left, the only sign that the failure was a full disk.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mmstudio.errors import SettingsError, StorageError

# A native writer failing with less than this left on the disk ran out of space.
LOW_SPACE = 64 * 2**20


def file_mode() -> int:
    """The mode an ordinary new file gets here (0o666 less the umask)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # Reading it from /proc does not change it: os.umask() sets it, racing other threads creating files.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_files(folder: Path) -> None:
    """Give every file in `folder` the ordinary mode: safetensors writes its files 0600, unlike the rest."""
    mode = file_mode()
    for item in Path(folder).iterdir():
        if item.is_file() and not item.is_symlink() and (item.stat().st_mode & 0o777) != mode:
            os.chmod(item, mode)


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to the disk (so a power cut cannot leave it half written)."""
    if Path(path).is_dir() and os.name == "nt":  # Windows cannot open a folder to flush it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file of a folder, then the folder itself."""
    for item in sorted(Path(folder).iterdir()):
        if item.is_file():
            fsync_path(item)
    fsync_path(folder)


def free_bytes(path: Path) -> int | None:
    existing = _nearest_existing(Path(path))
    try:
        return shutil.disk_usage(existing).free
    except OSError:
        return None


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def storage_error(exc: OSError, path: Path, doing: str) -> StorageError:
    """One readable line for an OSError met while writing under `path`."""
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return no_space_error(path, doing)
    if code == errno.EROFS:
        why = "the disk is read-only; choose a folder on a writable disk"
    elif code in (errno.EACCES, errno.EPERM):
        why = "permission denied; choose a folder you can write to"
    elif code == errno.ENOTDIR:
        why = "part of that path is a file, not a folder; choose another path"
    elif code == errno.EEXIST or code == errno.EISDIR:
        why = "something else is already there; choose another path"
    else:
        why = exc.strerror or str(exc)
    return StorageError(path, f"{doing} {path}: {why}")


def no_space_error(path: Path, doing: str) -> StorageError:
    return StorageError(path, f"{doing} {path}: no space left on the disk ({_size(free_bytes(path))} free); "
                              "free some space or choose a folder on another disk")


@contextmanager
def disk_errors(path: Path, doing: str = "cannot save to") -> Iterator[None]:
    """Writing under `path`: disk failures leave as one StorageError; anything else as it was."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(exc, Path(path), doing) from exc
    except Exception as exc:  # torch's zip writer, safetensors: their errors do not say "no space"
        free = free_bytes(path)
        if free is not None and free < LOW_SPACE:
            raise no_space_error(Path(path), doing) from exc
        raise


def check_writable_folder(path: Path, what: str) -> None:
    """Fail now, before hours of work, if `path` cannot become a folder we write into.

    Nothing is left behind: the folder is not created, the probe file is removed.
    """
    if not os.fspath(path).strip():
        raise SettingsError(what, "must not be empty")
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        if existing == Path(os.path.abspath(path)):
            raise StorageError(path, f"{what} {path} is a file, not a folder; choose a folder")
        raise StorageError(path, f"cannot make {what} {path}: {existing} is a file, not a folder; "
                                 "choose another path")
    try:
        with tempfile.TemporaryFile(dir=existing) as probe:
            probe.write(b"mmstudio")
            probe.flush()
    except OSError as exc:
        raise storage_error(exc, path, f"cannot write to {what}") from None


def write_json_atomic(path: Path, data: dict) -> None:
    """Write `data` as JSON to `path` so a crash leaves the old file or the new one, never half of one."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` (UTF-8, line ends as given) to `path`: a crash leaves the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes files private; these get the mode of any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
