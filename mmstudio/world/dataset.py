"""Write / read Shapes World datasets in the Hugging Face imagefolder layout.

    out/images/000000.png ...
    out/metadata.jsonl      one JSON object per line:
        file_name, caption, questions, negatives, objects, width, height

Scene i depends only on (seed, i): its generator is seeded with
`SeedSequence(seed, spawn_key=(i,))`, so it is the same whatever `count` or
`workers` is, and the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmstudio.errors import DatasetError
from mmstudio.world.render import render_scene
from mmstudio.world.scene import Scene, sample_scene
from mmstudio.world.texts import absent_question, caption, hard_negatives, questions
from mmstudio.world.vocab import COLORS, SHAPES

METADATA = "metadata.jsonl"
IMAGES = "images"
PNG_COMPRESS_LEVEL = 1  # twice as fast as the default 6 for ~13 % bigger files
KEYS = ("file_name", "caption", "questions", "negatives", "objects", "width", "height")


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene `index` of a dataset with this seed."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


def _r(v: float) -> float:
    return round(float(v), 1)


def scene_record(scene: Scene, file_name: str, rng: np.random.Generator, *,
                 shapes: Sequence[str] = SHAPES, colors: Sequence[str] = COLORS) -> dict:
    """The metadata row of a scene (questions / negatives drawn from rng)."""
    qas = questions(scene, rng, shapes=shapes, colors=colors)
    negs = hard_negatives(scene, rng, shapes=shapes, colors=colors)
    # Drawn after everything of Shapes World v1, so a seed still gives v1's scenes and texts, plus this.
    absent = absent_question(scene, rng, shapes=shapes, colors=colors)
    qas = [*qas, absent] if absent else qas
    return {
        "file_name": file_name,
        "caption": caption(scene),
        "questions": [{"question": q.question, "answer": q.answer, "kind": q.kind}
                      for q in qas],
        "negatives": negs,
        "objects": [{"shape": o.shape, "color": o.color, "size": o.size,
                     "center": [_r(o.center[0]), _r(o.center[1])],
                     "bbox": [_r(v) for v in o.bbox]} for o in scene.objects],
        "width": scene.width,
        "height": scene.height,
    }


def _file_name(index: int) -> str:
    return f"{IMAGES}/{index:06d}.png"


def _make_one(args) -> str:
    out, index, seed, shapes, colors, size = args
    rng = scene_rng(seed, index)
    scene = sample_scene(rng, shapes=shapes, colors=colors, size=size)
    name = _file_name(index)
    record = scene_record(scene, name, rng, shapes=shapes, colors=colors)
    path = Path(out) / name
    tmp = path.with_name(f".{path.name}.tmp")
    render_scene(scene).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    os.replace(tmp, path)
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def generate_dataset(out: Path, count: int, seed: int, *, shapes: Sequence[str] = SHAPES,
                     colors: Sequence[str] = COLORS, size: int | None = None,
                     workers: int = 1) -> Path:
    """Write `count` scenes to `out` (created if needed); returns `out`.

    Existing files of the same names are overwritten; metadata.jsonl is replaced
    atomically once every image is written.
    """
    out = Path(out)
    if count < 0:
        raise ValueError("count must be >= 0")
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out), i, int(seed), tuple(shapes), tuple(colors), size) for i in range(count)]
    if workers > 1 and count > 1:
        # spawn: safe inside a threaded (GUI) process; the executor raises
        # BrokenProcessPool instead of hanging when a worker cannot start.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        chunk = max(1, min(64, count // (4 * workers)))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            lines = list(pool.map(_make_one, jobs, chunksize=chunk))
    else:
        lines = [_make_one(j) for j in jobs]
    tmp = out / f".{METADATA}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / METADATA)
    return out


def read_metadata(folder: Path) -> list[dict]:
    """Rows of folder/metadata.jsonl (each a dict with at least a str file_name).

    Raises DatasetError listing every bad line.
    """
    path = Path(folder) / METADATA
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from e
    rows, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}:{n}: not JSON ({e.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path.name}:{n}: not a JSON object")
            continue
        if not isinstance(row.get("file_name"), str):
            problems.append(f"{path.name}:{n}: no file_name")
            continue
        rows.append(row)
    if problems:
        raise DatasetError(f"{path}: {len(problems)} bad line(s)", problems)
    return rows


def true_captions(paths: Sequence[Path | None]) -> list[str | None]:
    """For each picture, its true caption when it lies in a dataset folder (metadata.jsonl beside or one
    level above it, naming it), else None: what a caption is checked against. Folders whose metadata
    cannot be read are passed over."""
    found: dict[Path, dict[str, str]] = {}
    out: list[str | None] = []
    for path in paths:
        truth = None
        if path is not None:  # as given (the gallery's are absolute): resolving a million paths costs seconds
            path = Path(path)
            for root in (path.parent, path.parent.parent):
                if root not in found:
                    found[root] = _captions_in(root)
                name = path.relative_to(root).as_posix()
                if name in found[root]:
                    truth = found[root][name]
                    break
        out.append(truth)
    return out


def _captions_in(root: Path) -> dict[str, str]:
    if not (root / METADATA).is_file():
        return {}
    try:
        rows = read_metadata(root)
    except DatasetError:
        return {}
    return {row["file_name"]: row["caption"] for row in rows if isinstance(row.get("caption"), str)}
