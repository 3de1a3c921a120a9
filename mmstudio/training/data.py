"""Training data: read an imagefolder dataset, validate every row, and hold its pixels.

A dataset is a folder with `metadata.jsonl` (or `metadata.csv`) and image files
(HF imagefolder convention). Every bad row is reported as `file:line: why`, and
nothing trains on a dataset with problems.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmstudio.errors import DatasetError, MMStudioError
from mmstudio.imaging import load_image
from mmstudio.models.base import Task

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


@dataclass(frozen=True)
class Example:
    image: int  # index into the dataset's images
    text: str  # the caption (caption, itm) or the question (vqa)
    answer: str = ""  # vqa only
    negatives: tuple[str, ...] = ()  # itm only: texts that must not match
    kind: str = ""  # vqa question kind, when the data says


@dataclass
class Dataset:
    folder: Path
    task: Task
    images: list[Path]
    examples: list[Example]
    rows: int
    sources: list[str] = field(default_factory=list)  # "metadata.jsonl:LINE" per image
    # Ground truth per image when the data has it (Shapes World does): objects with boxes, and (w, h).
    objects: list[list[dict] | None] = field(default_factory=list)
    sizes: list[tuple[int, int] | None] = field(default_factory=list)

    def has_objects(self) -> bool:
        return bool(self.objects) and all(o is not None for o in self.objects)

    def words(self) -> set[str]:
        found: set[str] = set()
        for ex in self.examples:
            for text in (ex.text, ex.answer, *ex.negatives):
                found.update(tokenize_words(text))
        return found

    def summary(self) -> str:
        what = {Task.CAPTION: "captions", Task.VQA: "question-answer pairs", Task.ITM: "captions"}[self.task]
        extra = ""
        if self.task == Task.ITM:
            extra = f", {sum(len(e.negatives) for e in self.examples)} hard negatives"
        return f"{self.folder}: {self.rows} rows, {len(self.images)} images, {len(self.examples)} {what}{extra}"


def tokenize_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _rows(folder: Path):
    """(source, line number, row dict or error text) for each non-empty row."""
    jsonl, table = folder / "metadata.jsonl", folder / "metadata.csv"
    if jsonl.is_file():
        try:
            lines = jsonl.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{jsonl}: cannot read ({exc})") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield jsonl.name, number, f"not valid JSON ({exc.msg})"
                continue
            yield jsonl.name, number, row if isinstance(row, dict) else "a row must be a JSON object"
    elif table.is_file():
        try:
            with table.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                for number, row in enumerate(reader, start=2):
                    if "questions" in row and row["questions"]:
                        try:
                            row["questions"] = json.loads(row["questions"])
                        except json.JSONDecodeError:
                            yield table.name, number, "column questions is not valid JSON"
                            continue
                    yield table.name, number, row
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"{table}: cannot read ({exc})") from None
    else:
        raise DatasetError(f"{folder}: no metadata.jsonl or metadata.csv (an imagefolder dataset needs one)")


def _text(row: dict, *keys: str) -> str | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return None


def _examples_of(row: dict, task: Task, image: int) -> tuple[list[Example], str | None]:
    """The row's examples for the task, or a problem. A row made for the other kind of task
    (a caption row in VQA training, a question row in caption training) gives no examples and no problem."""
    has_caption = bool(_text(row, "caption", "text"))
    has_questions = bool(row.get("questions")) or bool(_text(row, "question"))
    if task in (Task.CAPTION, Task.ITM) and not has_caption and has_questions:
        return [], None
    if task == Task.VQA and not has_questions and has_caption:
        return [], None
    if task == Task.CAPTION:
        caption = _text(row, "caption", "text")
        return ([Example(image, caption)], None) if caption else ([], "no caption (key caption or text)")
    if task == Task.ITM:
        caption = _text(row, "caption", "text")
        if not caption:
            return [], "no caption (key caption or text)"
        negatives = row.get("negatives") or []
        if not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
            return [], "negatives must be a list of texts"
        return [Example(image, caption, negatives=tuple(" ".join(n.split()) for n in negatives))], None
    pairs = row.get("questions")
    if pairs is None and _text(row, "question"):
        pairs = [{"question": row.get("question"), "answer": row.get("answer")}]
    if not isinstance(pairs, list) or not pairs:
        return [], "no questions (key questions: [{question, answer}], or question and answer)"
    examples = []
    for i, pair in enumerate(pairs):
        question = _text(pair, "question") if isinstance(pair, dict) else None
        answer = _text(pair, "answer") if isinstance(pair, dict) else None
        if not question or not answer:
            return [], f"question {i + 1} needs a question and an answer"
        examples.append(Example(image, question, answer=answer, kind=str(pair.get("kind", ""))))
    return examples, None


def read_dataset(folder: Path | str, task: Task, *, check_images: bool = True, rows: int | None = None) -> Dataset:
    """Parse and validate; raises DatasetError listing every bad row. rows: only the first N rows."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such dataset folder")
    task = Task(task)
    images: list[Path] = []
    sources: list[str] = []
    objects: list[list[dict] | None] = []
    sizes: list[tuple[int, int] | None] = []
    examples: list[Example] = []
    problems: list[str] = []
    limit, rows = rows, 0
    root = folder.resolve()
    for source, number, row in _rows(folder):
        if limit is not None and rows >= limit:
            break
        rows += 1
        where = f"{folder / source}:{number}"
        if isinstance(row, str):
            problems.append(f"{where}: {row}")
            continue
        name = row.get("file_name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}: no file_name")
            continue
        path = (folder / name).resolve()
        if root not in path.parents:
            problems.append(f"{where}: file_name {name!r} points outside the dataset folder")
            continue
        if not path.is_file():
            problems.append(f"{where}: image {name} not found")
            continue
        found, problem = _examples_of(row, task, len(images))
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        images.append(path)
        sources.append(where)
        objects.append(_objects(row))
        sizes.append((int(row["width"]), int(row["height"])) if _is_size(row) else None)
        examples.extend(found)
    if rows == 0:
        problems.append(f"{folder}: the metadata has no rows")
    elif not examples and not problems:
        problems.append(f"{folder}: no row has what {task.value} training needs "
                        f"({'questions with answers' if task == Task.VQA else 'a caption'})")
    if check_images and not problems:
        problems.extend(_broken_images(images, sources))
    if problems:
        raise DatasetError(f"{folder}: {len(problems)} problem(s); nothing was started", problems)
    return Dataset(folder=folder, task=task, images=images, examples=examples, rows=rows, sources=sources,
                   objects=objects, sizes=sizes)


def _is_size(row: dict) -> bool:
    return all(isinstance(row.get(k), (int, float)) and row[k] > 0 for k in ("width", "height"))


def _objects(row: dict) -> list[dict] | None:
    """Objects with shape, color, size and a 4-number bbox, or None when the row lacks them."""
    objects = row.get("objects")
    if not isinstance(objects, list) or not _is_size(row):
        return None
    for obj in objects:
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("shape", "color", "size")):
            return None
        box = obj.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
            return None
    return objects


def _broken_images(images: list[Path], sources: list[str]) -> list[str]:
    from PIL import Image

    problems = []
    for path, where in zip(images, sources):
        try:
            with Image.open(path) as im:  # the header is enough here; decoding happens once, later
                im.size  # noqa: B018
        except Exception:  # noqa: BLE001 - any failure to read is the row's problem
            try:
                load_image(path)
            except MMStudioError as exc:
                problems.append(f"{where}: {exc.reason if hasattr(exc, 'reason') else exc}")
    return problems


class PixelStore:
    """Every image of a dataset resized once to the model's input, as uint8 (N, S, S, 3).

    Resizing here is the processor's own resize (PIL, same filter), so the
    float pixels built from it equal what the processor gives at inference.
    With `cache`, the array is kept in that folder for the next run on the same
    files at the same size (the recipe's three stages read 90,000 scenes once).
    """

    def __init__(self, dataset: Dataset, image_processor, cache: Path | None = None):
        from mmstudio.models.blip import processor_geometry

        size, resample, self.mean, self.std = processor_geometry(image_processor)
        stored = Path(cache) / f"pixels-{_files_key(dataset.images, size, resample)}.npy" if cache else None
        if stored is not None and stored.is_file():
            # Read-only and paged in on demand: a batch's fancy indexing copies what it needs.
            self.pixels = np.load(stored, mmap_mode="r")
            return
        self.pixels = np.zeros((len(dataset.images), size, size, 3), dtype=np.uint8)
        problems = []
        for i, (path, where) in enumerate(zip(dataset.images, dataset.sources)):
            try:
                self.pixels[i] = np.asarray(load_image(path).resize((size, size), resample=resample))
            except MMStudioError as exc:
                problems.append(f"{where}: {exc}")
        if problems:
            raise DatasetError(f"{dataset.folder}: {len(problems)} image(s) could not be read", problems)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            partial = stored.with_suffix(".partial")
            with partial.open("wb") as out:
                np.save(out, self.pixels)
            partial.replace(stored)  # a crash mid-write never leaves a short array under the real name

    def batch(self, indices) -> "torch.Tensor":  # noqa: F821
        import torch

        raw = torch.from_numpy(self.pixels[np.asarray(indices)]).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (raw - mean) / std


def _files_key(paths: list[Path], size: int, resample) -> str:
    """Names the exact files (path, size, modification time) and the resize: a changed image changes it."""
    import hashlib

    digest = hashlib.sha1(f"{size}:{resample}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\n{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]
