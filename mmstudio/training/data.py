"""Training data: the one dataset reader, every row validated, and the dataset's pixels.

A dataset is a folder with `metadata.jsonl` or `metadata.csv` and image files
(HF imagefolder convention). Training, evaluation (`mmstudio eval` and the
evaluation during training), "Check data", teaching and the CLI's `--input`
files all read rows through `read_rows` here, so what one accepts the others
accept. Every bad row is reported as `file:line: why`, and nothing trains on a
dataset with problems.

Reading is bounded: a metadata file, a line and a text each have a cap, so a
hostile or mistaken file (a 10 MB caption, /dev/zero) is a clear error rather
than gigabytes of memory. Rows naming the same image share one decoded copy.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from mmstudio.errors import DatasetError, MMStudioError
from mmstudio.imaging import load_image
from mmstudio.models.base import Task
from mmstudio.models.blip import processor_geometry

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")

# A Shapes World row is about 1 KB and 90,000 scenes about 90 MB: the caps leave room for far more,
# and stop a wrong file (a video, a device) before it costs memory.
MAX_FILE_BYTES = 256 * 2**20
MAX_LINE_BYTES = 2**20
# BLIP's text position tables hold 512 tokens at most (the built-in models 48) and training keeps 48:
# a text of more than 2,000 characters (~500 tokens of English) is cut anyway, so it is a mistake.
MAX_TEXT_CHARS = 2000
# Each new word adds a row to the embedding and output tables (and a token to the tokenizer):
# more than a few thousand means prose or noise, not the names of new things.
MAX_NEW_WORDS = 5000
_MAX_NUMBER_CHARS = 40  # JSON numbers longer than this are not sizes or boxes (and int() refuses > 4300 digits)
_BOM = b"\xef\xbb\xbf"
METADATA_FILES = ("metadata.jsonl", "metadata.csv")


@dataclass(frozen=True)
class Example:
    image: int  # index into the dataset's images
    text: str  # the caption (caption, itm) or the question (vqa)
    answer: str = ""  # vqa only
    negatives: tuple[str, ...] = ()  # itm only: texts that must not match
    kind: str = ""  # vqa question kind, when the data says
    line: int = 0  # the row's line in the metadata file


@dataclass
class Dataset:
    folder: Path
    task: Task
    images: list[Path]  # each distinct image once, however many rows name it
    examples: list[Example]
    rows: int
    sources: list[str] = field(default_factory=list)  # "metadata.jsonl:LINE" per image (its first row)
    # Ground truth per image when the data has it (Shapes World does): objects with boxes, and (w, h).
    objects: list[list[dict] | None] = field(default_factory=list)
    sizes: list[tuple[int, int] | None] = field(default_factory=list)
    metadata: Path | None = None  # the file the rows came from
    _words: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    def has_objects(self) -> bool:
        return bool(self.objects) and all(o is not None for o in self.objects)

    def words(self) -> frozenset[str]:
        """Every word of the texts; tokenized once (preparing a run asks several times)."""
        if self._words is None:
            found: set[str] = set()
            for ex in self.examples:
                for text in (ex.text, ex.answer, *ex.negatives):
                    found.update(tokenize_words(text))
            self._words = frozenset(found)
        return self._words

    def where(self, example: Example) -> str:
        return f"{self.metadata}:{example.line}"

    def summary(self) -> str:
        what = {Task.CAPTION: "captions", Task.VQA: "question-answer pairs", Task.ITM: "captions"}[self.task]
        extra = ""
        if self.task == Task.ITM:
            extra = f", {sum(len(e.negatives) for e in self.examples)} hard negatives"
        return f"{self.folder}: {self.rows} rows, {len(self.images)} images, {len(self.examples)} {what}{extra}"


def tokenize_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def check_new_words(dataset: Dataset, new_words: list[str]) -> None:
    """Refuse data that would grow the model's vocabulary by more than MAX_NEW_WORDS words."""
    if len(new_words) <= MAX_NEW_WORDS:
        return
    new, shown = set(new_words), {}
    for example in dataset.examples:  # where the first few appear, in file order
        for text in (example.text, example.answer, *example.negatives):
            for word in tokenize_words(text):
                if word in new and word not in shown and len(shown) < 10:
                    shown[word] = dataset.where(example)
        if len(shown) >= 10:
            break
    problems = [f"{where}: new word {word[:40]!r}" for word, where in shown.items()]
    raise DatasetError(f"{dataset.folder}: the data brings {len(new_words):,} words the model does not know "
                       f"(at most {MAX_NEW_WORDS:,}): each would add a row to the model's word tables. "
                       "Is a column of prose or ids used as captions?", problems)


# ------------------------------------------------------------------ reading rows


class RowProblem(ValueError):
    """A value the reader refuses; the message says why, fit to follow 'file:line: '."""


def _refuse_constant(name: str):
    raise RowProblem(f"{name} is not a number JSON allows")


def _parse_int(text: str) -> int:
    if len(text) > _MAX_NUMBER_CHARS:
        raise RowProblem(f"a number {len(text):,} digits long")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text) if len(text) <= _MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise RowProblem(f"number {text[:20]}{'...' if len(text) > 20 else ''} is too large")
    return value


def parse_json(text: str):
    """Strict JSON: no NaN/Infinity, no endless numbers; raises RowProblem (a ValueError) with the reason."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_parse_int, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise RowProblem(f"not valid JSON ({exc.msg}, column {exc.colno})") from None
    except RecursionError:
        raise RowProblem("not valid JSON (nested too deeply)") from None


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MiB" if nbytes >= 2**20 else f"{nbytes:,} bytes"


def _lines(handle: BinaryIO, name: str) -> Iterator[tuple[int, str | None, str | None]]:
    """(line number, text, problem) per line, split on \\n only (U+2028 and friends stay inside strings).

    Bounded whatever the file is (a pipe, /dev/zero): a line over MAX_LINE_BYTES or a file over
    MAX_FILE_BYTES ends the reading with a problem on that line.
    """
    total = 0
    for number in itertools.count(1):
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        total += len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            yield number, None, (f"line longer than {_size(MAX_LINE_BYTES)} (is {name} a file of rows?); "
                                 "nothing after it was read")
            return
        if total > MAX_FILE_BYTES:
            yield number, None, f"the file is over {_size(MAX_FILE_BYTES)}; nothing from here on was read"
            return
        if number == 1 and raw.startswith(_BOM):  # spreadsheet programs write one
            raw = raw[len(_BOM):]
        try:
            yield number, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            yield number, None, f"not UTF-8 text (byte {exc.start + 1} of the line)"


def _jsonl_rows(handle: BinaryIO, name: str) -> Iterator[tuple[int, dict | str]]:
    for number, text, problem in _lines(handle, name):
        if problem is not None:
            yield number, problem
            continue
        if not text.strip():
            continue
        try:
            row = parse_json(text)
        except RowProblem as exc:
            yield number, str(exc)
            continue
        yield number, row if isinstance(row, dict) else "a row must be a JSON object"


def _csv_rows(handle: BinaryIO, name: str) -> Iterator[tuple[int, dict | str]]:
    """Rows of a CSV file with a header line. Strict: an unclosed quote is an error at the line that opens
    it, not the rest of the file swallowed into one field; a row is one line (captions are)."""
    position = {"line": 0}
    stopped: list[tuple[int, str]] = []

    def texts():
        for number, text, problem in _lines(handle, name):
            position["line"] = number
            if problem is not None:
                stopped.append((number, problem))
                yield "\n"  # an undecodable line reads as an empty one; its problem is reported
                continue
            yield text

    reader = csv.reader(texts(), strict=True)
    header: list[str] | None = None
    while True:
        start = position["line"] + 1
        fields, problem, finished = None, None, False
        try:
            fields = next(reader)
        except StopIteration:
            finished = True
        except csv.Error as exc:
            message = str(exc)
            if "unexpected end of data" in message or position["line"] > start:
                # Strict quoting fails where the quote left open meets the next one (or the file's end).
                problem, finished = "a quote opened on this line is never closed", "end of data" in message
            elif "field larger than field limit" in message:
                problem = f"not valid CSV (a field longer than {csv.field_size_limit():,} characters)"
            else:
                problem = f"not valid CSV ({message})"
        yield from stopped
        stopped.clear()
        if problem:
            yield start, problem
        if finished:
            return
        if fields is None:
            continue
        end = position["line"]
        if not fields or not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip() for f in fields]
            continue
        if end > start:
            yield start, f"a quoted field runs on to line {end} (an unclosed quote?); a row must be one line"
            continue
        if len(fields) != len(header):
            yield start, f"{len(fields)} fields where the header has {len(header)}"
            continue
        row = dict(zip(header, fields))
        if row.get("questions"):
            try:
                row["questions"] = parse_json(row["questions"])
            except RowProblem as exc:
                yield start, f"column questions: {exc}"
                continue
        yield start, row


def read_rows(path: Path | str) -> Iterator[tuple[int, dict | str]]:
    """(line number, row or problem) for each non-empty row of a JSONL file (or a CSV file, by its suffix).

    The one reader of row files: datasets, evaluation sets, teaching folders and `--input` files.
    Raises DatasetError when the file cannot be opened or is over the size cap.
    """
    path = Path(path)
    if str(path) == "-":  # `--input -`: rows from standard input, with the same caps as a file
        yield from _jsonl_rows(sys.stdin.buffer, "stdin")
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below; the generator may be left unfinished
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            size = path.stat().st_size if path.is_file() else 0
        except OSError:
            size = 0
        if size > MAX_FILE_BYTES:
            raise DatasetError(f"{path}: {_size(size)} is over the {_size(MAX_FILE_BYTES)} a row file may have")
        rows = _csv_rows if path.suffix.lower() == ".csv" else _jsonl_rows
        try:
            yield from rows(handle, path.name)
        except OSError as exc:
            raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None


def metadata_file(folder: Path) -> Path:
    """The dataset's metadata file: exactly one of metadata.jsonl and metadata.csv."""
    found = [folder / name for name in METADATA_FILES if (folder / name).is_file()]
    if not found:
        raise DatasetError(f"{folder}: no metadata.jsonl or metadata.csv (an imagefolder dataset needs one)")
    if len(found) > 1:
        raise DatasetError(f"{folder}: both metadata.jsonl and metadata.csv: keep the one with the rows")
    return found[0]


def clean_text(value: object, what: str) -> str | None:
    """The text with its whitespace runs made single spaces, None when absent or blank.
    Raises RowProblem for a text over MAX_TEXT_CHARS."""
    if not isinstance(value, str):
        return None
    if len(value) > MAX_TEXT_CHARS and len(" ".join(value.split())) > MAX_TEXT_CHARS:
        raise RowProblem(f"{what} is {len(value):,} characters (at most {MAX_TEXT_CHARS:,}: the model reads "
                       "a few hundred tokens of a text and cuts the rest)")
    return " ".join(value.split()) or None


def _text(row: dict, *keys: str) -> str | None:
    for key in keys:
        value = clean_text(row.get(key), key)
        if value:
            return value
    return None


def _examples_of(row: dict, task: Task, image: int, line: int) -> tuple[list[Example], str | None]:
    """The row's examples for the task, or a problem. A row made for the other kind of task
    (a caption row in VQA training, a question row in caption training) gives no examples and no problem."""
    try:
        return _examples(row, task, image, line), None
    except RowProblem as exc:
        return [], str(exc)


def _examples(row: dict, task: Task, image: int, line: int) -> list[Example]:
    caption = _text(row, "caption", "text")
    has_questions = bool(row.get("questions")) or bool(_text(row, "question"))
    if task in (Task.CAPTION, Task.ITM) and not caption and has_questions:
        return []
    if task == Task.VQA and not has_questions and caption:
        return []
    if task in (Task.CAPTION, Task.ITM) and not caption:
        raise RowProblem("no caption (key caption or text)")
    if task == Task.CAPTION:
        return [Example(image, caption, line=line)]
    if task == Task.ITM:
        negatives = row.get("negatives") or []
        if not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
            raise RowProblem("negatives must be a list of texts")
        negatives = tuple(clean_text(n, f"negative {i + 1}") for i, n in enumerate(negatives))
        return [Example(image, caption, negatives=negatives, line=line)]
    pairs = row.get("questions")
    if pairs is None and _text(row, "question"):  # one flat pair: training and evaluation both take it
        pairs = [{"question": row.get("question"), "answer": row.get("answer"), "kind": row.get("kind")}]
    if not isinstance(pairs, list) or not pairs:
        raise RowProblem("no questions (key questions: [{question, answer}], or question and answer)")
    examples = []
    for i, pair in enumerate(pairs):
        question = _text(pair, "question") if isinstance(pair, dict) else None
        answer = clean_text(pair.get("answer"), "answer") if isinstance(pair, dict) else None
        if not question or not answer:
            raise RowProblem(f"question {i + 1} needs a question and an answer")
        kind = pair.get("kind")
        examples.append(Example(image, question, answer=answer, line=line,
                                kind=kind if isinstance(kind, str) and len(kind) <= 100 else ""))
    return examples


def _image_path(folder: Path, root: Path, name: object) -> tuple[Path | None, str | None]:
    """(resolved image path, None) or (None, the problem)."""
    if not isinstance(name, str) or not name.strip():
        return None, "no file_name"
    if any(ord(c) < 32 for c in name):
        return None, f"file_name {name[:80]!r} contains a control character"
    try:
        path = (folder / name).resolve()
        if root not in path.parents:
            return None, f"file_name {name[:80]!r} points outside the dataset folder"
        if not path.is_file():
            return None, f"image {name[:200]} not found"
    except (OSError, ValueError) as exc:  # a name too long for the file system, say
        return None, f"file_name {name[:80]!r} cannot be used ({getattr(exc, 'strerror', None) or exc})"
    return path, None


def read_dataset(folder: Path | str, task: Task, *, check_images: bool = True, rows: int | None = None) -> Dataset:
    """Parse and validate; raises DatasetError listing every bad row. rows: only the first N rows."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such dataset folder")
    task = Task(task)
    metadata = metadata_file(folder)
    images: list[Path] = []
    index: dict[Path, int] = {}  # each image decoded and stored once, however many rows name it
    sources: list[str] = []
    objects: list[list[dict] | None] = []
    sizes: list[tuple[int, int] | None] = []
    examples: list[Example] = []
    problems: list[str] = []
    limit, rows = rows, 0
    root = folder.resolve()
    for number, row in read_rows(metadata):
        if limit is not None and rows >= limit:
            break
        rows += 1
        where = f"{metadata}:{number}"
        if isinstance(row, str):
            problems.append(f"{where}: {row}")
            continue
        path, problem = _image_path(folder, root, row.get("file_name"))
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        image = index.get(path, len(images))
        found, problem = _examples_of(row, task, image, number)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        if image == len(images):
            index[path] = image
            images.append(path)
            sources.append(where)
            objects.append(None)
            sizes.append(None)
        if objects[image] is None:  # the first row that describes the image's objects does
            objects[image] = _objects(row)
        if sizes[image] is None and _is_size(row):
            sizes[image] = (int(row["width"]), int(row["height"]))
        examples.extend(found)
    if rows == 0:
        problems.append(f"{folder}: the metadata has no rows")
    elif not examples and not problems:
        problems.append(f"{folder}: no row has what {task.value} training needs "
                        f"({'questions with answers' if task == Task.VQA else 'a caption'})")
    if check_images:  # with row problems too: a corrupt image is reported in the same pass, not the next
        problems.extend(_broken_images(images, sources))
    if problems:
        raise DatasetError(f"{folder}: {len(problems)} problem(s); nothing was started", problems)
    return Dataset(folder=folder, task=task, images=images, examples=examples, rows=rows, sources=sources,
                   objects=objects, sizes=sizes, metadata=metadata)


def _is_size(row: dict) -> bool:
    return all(isinstance(row.get(k), (int, float)) and 0 < row[k] < 1e6 for k in ("width", "height"))


def _is_numbers(value: object, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(isinstance(v, (int, float)) for v in value)


def _objects(row: dict) -> list[dict] | None:
    """Objects with shape, color, size and a 4-number bbox, or None when the row lacks them."""
    objects = row.get("objects")
    if not isinstance(objects, list) or not _is_size(row):
        return None
    for obj in objects:
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("shape", "color", "size")):
            return None
        if not _is_numbers(obj.get("bbox"), 4) or ("center" in obj and not _is_numbers(obj["center"], 2)):
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
        size, resample, self.mean, self.std = processor_geometry(image_processor)
        stored = Path(cache) / f"pixels-{_files_key(dataset.images, size, resample)}.npy" if cache else None
        if stored is not None and stored.is_file():
            # Read-only and paged in on demand: a batch's fancy indexing copies what it needs.
            self.pixels = np.load(stored, mmap_mode="r")
            return
        self.pixels = np.zeros((len(dataset.images), size, size, 3), dtype=np.uint8)

        def read(i: int) -> str | None:
            try:
                self.pixels[i] = np.asarray(load_image(dataset.images[i]).resize((size, size), resample=resample))
            except MMStudioError as exc:
                return f"{dataset.sources[i]}: {exc}"
            return None

        # PIL decodes and resizes without holding the GIL: on 2 cores, 1.5-2 times quicker on threads
        # (bench/collate_speed.py); each thread writes its own rows.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            problems = [problem for problem in pool.map(read, range(len(dataset.images))) if problem]
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
