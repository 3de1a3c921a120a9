"""Getting real checkpoints: the ones mmstudio knows by name, downloads into the Hugging Face cache, removal.

Downloads go through huggingface_hub's own pieces (the file listing, `hf_hub_url`, `get_hf_file_metadata`,
`http_get` with its retries and size check, its auth headers and file locks) into the cache layout every
transformers program shares (blobs, snapshots, refs), so a model fetched here is the one `from_pretrained`
finds. `hf_hub_download` itself is not used: since huggingface_hub 1.x it writes each try to a new temporary
file and deletes it on failure, so a broken download of a 2 GB model starts again from zero; here the
partial blob stays as `<etag>.incomplete` and the next try asks only for the rest (an HTTP Range request).

Only what mmstudio loads is fetched: configs, tokenizer and processor files and safetensors weights; never
pickle weights (.bin) nor Python code. Each weight file is checked against the SHA-256 the hub lists for it
before it enters the cache. The environment decides where (HF_HOME, HF_HUB_CACHE), from which server
(HF_ENDPOINT) and whether at all (HF_HUB_OFFLINE); proxies are httpx's (HTTPS_PROXY, ...). All are read at
call time, not when huggingface_hub was first imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmstudio.errors import CancelledError, DownloadError
from mmstudio.models.base import CancelCheck, never_cancelled

KNOWN_MODELS = Path(__file__).with_name("known_models.json")
# Files of a checkpoint that mmstudio reads; everything else (pickle weights, ONNX, TF, Flax, code) stays away.
FETCHED_SUFFIXES = (".json", ".safetensors", ".txt", ".model", ".vocab", ".tiktoken", ".jinja", ".md")
# Progress and cancel are checked once per chunk: 1 MiB, not the library's 10, so Stop answers within a second.
CHUNK = 1024 * 1024


def hub_cache() -> Path:
    """The Hugging Face cache folder, as the environment says now (huggingface_hub fixes its own at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@dataclass(frozen=True)
class KnownModel:
    id: str
    family: str
    tasks: tuple[str, ...]
    size_mb: int
    licence: str
    does: str


def known_models() -> list[KnownModel]:
    data = json.loads(KNOWN_MODELS.read_text(encoding="utf-8"))
    return [KnownModel(m["id"], m["family"], tuple(m["tasks"]), int(m["size_mb"]), m["licence"], m["does"])
            for m in data["models"]]


def offline_message(repo_id: str) -> str:
    folder = hub_cache() / ("models--" + repo_id.replace("/", "--"))
    return (f"offline (HF_HUB_OFFLINE is set): {repo_id} cannot be downloaded. On a machine that is online run "
            f"`mmstudio models download {repo_id}` (or `hf download {repo_id}`), then copy its folder "
            f"{folder.name} into {hub_cache()} here; or give --model a folder that holds the checkpoint")


@dataclass(frozen=True)
class DownloadProgress:
    done: int  # bytes of the whole checkpoint on disk, resumed ones included
    total: int
    file: str  # the file being fetched
    speed: float  # bytes per second over this download so far (resumed bytes excluded)
    eta: float | None  # seconds, None until the speed is known

    def text(self) -> str:
        """ "312.4 / 990.0 MB  12.3 MB/s  55 s left  (model.safetensors)" """
        eta = f"  {_duration(self.eta)} left" if self.eta is not None else ""
        return (f"{self.done / 1e6:.1f} / {self.total / 1e6:.1f} MB  {self.speed / 1e6:.1f} MB/s{eta}"
                f"  ({self.file})")


Progress = Callable[[DownloadProgress], None]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"


@dataclass(frozen=True)
class _File:
    name: str
    size: int
    sha256: str | None  # git-lfs files (the weights) carry theirs


def plan(repo_id: str, revision: str | None = None) -> tuple[str, list[_File]]:
    """(commit, files to fetch) of a hub model; DownloadError if it cannot be, or has no safetensors weights."""
    if hub_offline():
        raise DownloadError(offline_message(repo_id))
    from huggingface_hub import HfApi, constants

    constants.HF_HUB_OFFLINE = False  # the library froze the variable at its import; it is unset now
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi(endpoint=hub_endpoint()).model_info(repo_id, revision=revision, files_metadata=True)
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise DownloadError(f"{repo_id}: no such model on {hub_endpoint()} (or it is private: log in with "
                            "`hf auth login`)") from None
    except Exception as exc:  # noqa: BLE001 - httpx, proxy, TLS and HTTP errors all mean "not reachable"
        raise DownloadError(f"cannot reach {hub_endpoint()} for {repo_id}: {_reason(exc)}. Without a network, "
                            f"copy the model into {hub_cache()} (see `mmstudio models download --help`)") from None
    files = []
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if "/" in name or not name.endswith(FETCHED_SUFFIXES):
            continue
        lfs = sibling.lfs
        files.append(_File(name, int(sibling.size or (lfs.size if lfs else 0) or 0), lfs.sha256 if lfs else None))
    if not any(f.name.endswith(".safetensors") for f in files):
        raise DownloadError(f"{repo_id} has no safetensors weights (only .bin or other formats): mmstudio loads "
                            "safetensors only, because .bin files run pickle code when loaded")
    return info.sha, files


def download(repo_id: str, *, revision: str | None = None, progress: Progress | None = None,
             cancel: CancelCheck = never_cancelled) -> Path:
    """Fetch a checkpoint into the cache (resuming what an earlier try left); its snapshot folder.

    Raises DownloadError (offline, unreachable, missing, corrupt) or CancelledError; a cancelled download
    resumes where it stopped the next time.
    """
    from huggingface_hub import constants

    commit, files = plan(repo_id, revision)
    total = sum(f.size for f in files)
    meter = _Meter(total, progress, cancel)
    constants.DOWNLOAD_CHUNK_SIZE = CHUNK  # read per call by the library: progress and Stop once a MiB
    repo = hub_cache() / f"models--{repo_id.replace('/', '--')}"
    folder = repo / "snapshots" / commit
    for file in files:
        cancel()
        meter.begin(file)
        try:
            _fetch(repo_id, repo, commit, file, meter)
        except (CancelledError, DownloadError):
            raise
        except Exception as exc:  # noqa: BLE001 - network errors mid-file: what is on disk is kept for a resume
            raise DownloadError(f"downloading {repo_id}/{file.name} failed: {_reason(exc)}. Run it again: it "
                                "resumes where it stopped") from None
        meter.finish(file)
    # Files were fetched at one commit (the listing's), so none mixes two revisions; the branch asked for now
    # points at it, as hf_hub_download records a branch, so loading "OWNER/NAME" offline finds this snapshot.
    ref = hub_cache() / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    if ref.name != commit:
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return folder


def _fetch(repo_id: str, repo: Path, commit: str, file: _File, meter: "_Meter") -> None:
    """One file into the cache: its blob (resumed from `.incomplete`, checked) and its snapshot link."""
    from filelock import FileLock
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    pointer = repo / "snapshots" / commit / file.name
    if pointer.exists():
        return  # fetched and checked before
    headers = build_hf_headers()
    meta = get_hf_file_metadata(hf_hub_url(repo_id, file.name, revision=commit, endpoint=hub_endpoint()),
                                headers=headers)
    etag = (meta.etag or file.sha256 or "").strip('"')
    if not etag:
        raise DownloadError(f"{repo_id}/{file.name}: the server gave no ETag, so the file cannot be cached")
    blob = repo / "blobs" / etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock = hub_cache() / ".locks" / repo.name / f"{etag}.lock"  # the library's own: it waits on ours
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if not blob.exists():
            part = blob.with_name(f"{etag}.incomplete")
            with part.open("ab") as out:
                http_get(meta.location, out, resume_size=out.tell(), headers=headers,
                         expected_size=meta.size if meta.size is not None else file.size or None,
                         displayed_filename=file.name, tqdm_class=meter.bar_class())
            _verify(repo_id, part, file)
            part.replace(blob)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        try:
            pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        except OSError:  # no symlinks (Windows without developer mode): a copy, as huggingface_hub does
            shutil.copyfile(blob, pointer)


class _Meter:
    """Bytes done over all files, speed and ETA, and the cancel check, fed by the library's progress bars."""

    def __init__(self, total: int, progress: Progress | None, cancel: CancelCheck):
        self.total, self.progress, self.cancel = total, progress, cancel
        self.finished = 0  # bytes of files done
        self.current = 0  # bytes of the file being fetched
        self.fetched = 0  # bytes this download moved (resumed and cached bytes excluded): the speed's
        self.started = time.monotonic()
        self.file = ""

    def begin(self, file: _File) -> None:
        self.file, self.current = file.name, 0
        self._report()

    def finish(self, file: _File) -> None:
        self.finished += file.size
        self.current = 0
        self._report()

    def resumed(self, initial: int) -> None:
        self.current = initial
        self._report()

    def advance(self, count: int) -> None:
        self.current += count
        self.fetched += count
        self._report()
        self.cancel()  # raises CancelledError: the library leaves the .incomplete file for a resume

    def _report(self) -> None:
        if self.progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        speed = self.fetched / elapsed
        done = min(self.finished + self.current, self.total)
        eta = (self.total - done) / speed if speed > 0 else None
        self.progress(DownloadProgress(done, self.total, self.file, speed, eta))

    def bar_class(self):
        meter = self

        class Bar:  # what hf_hub_download calls of a tqdm: made with keywords, updated, closed
            def __init__(self, *_args, initial: int = 0, **_kwargs):
                if initial:
                    meter.resumed(initial)

            def update(self, count: int = 1) -> None:
                meter.advance(count)

            def close(self) -> None:
                return None

            def __enter__(self):
                return self

            def __exit__(self, *_exc):
                return False

        return Bar


def _verify(repo_id: str, path: Path, file: _File) -> None:
    """The file's size and, for weights, its SHA-256 against the hub's listing; a bad one is removed."""
    size = path.stat().st_size
    problem = None
    if file.size and size != file.size:
        problem = f"{size} bytes instead of {file.size}"
    elif file.sha256:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(CHUNK * 4), b""):
                digest.update(block)
        if digest.hexdigest() != file.sha256:
            problem = "its SHA-256 differs from the one the hub lists"
    if problem:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{repo_id}/{file.name} arrived corrupted ({problem}); it was deleted: download again")


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ----------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CachedModel:
    id: str
    size: int  # bytes on disk, all revisions
    folder: Path  # the newest snapshot
    incomplete: int  # bytes of interrupted downloads waiting for a resume
    # A branch points at a snapshot: written once every file is in (`download` writes it last), so a
    # stopped download, whose small files may all be there, is not complete.
    complete: bool = True


def cached() -> list[CachedModel]:
    """Models in the Hugging Face cache, with their disk use."""
    from huggingface_hub import scan_cache_dir

    root = hub_cache()
    if not root.is_dir():
        return []
    try:
        info = scan_cache_dir(root)
    except Exception:  # noqa: BLE001 - an unreadable cache lists nothing rather than failing
        return []
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        incomplete = sum(p.stat().st_size for p in (Path(repo.repo_path) / "blobs").glob("*.incomplete"))
        found.append(CachedModel(repo.repo_id, repo.size_on_disk + incomplete,
                                 Path(newest.snapshot_path) if newest else Path(repo.repo_path), incomplete,
                                 complete=any(revision.refs for revision in repo.revisions)))
    return found


def remove(repo_id: str) -> int:
    """Delete a model from the cache, every revision and partial download; the bytes freed."""
    folder = hub_cache() / ("models--" + repo_id.replace("/", "--"))
    if not folder.is_dir():
        raise DownloadError(f"{repo_id} is not in the cache ({hub_cache()})")
    freed = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(folder)
    return freed
