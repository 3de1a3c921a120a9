"""Teaching from corrections: a fixed caption or answer becomes a training example.

The image is copied into the dataset folder (named by its content, so the same
image is stored once) and the row is added to `metadata.jsonl` by writing the
whole file anew and renaming it over the old one, so a crash leaves either the
old file or the new one, never half a row. The row passes the dataset reader's
checks first (mmstudio.training.data), so what is taught can be trained on.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from PIL import Image

from mmstudio.errors import DatasetError
from mmstudio.imaging import content_key
from mmstudio.training.data import MAX_FILE_BYTES, RowProblem, clean_text

_lock = threading.Lock()


def add_correction(folder: Path, image: Image.Image, *, caption: str | None = None,
                   question: str | None = None, answer: str | None = None) -> dict:
    """Append one example (a caption, or a question with its answer) to an imagefolder dataset."""
    folder = Path(folder)
    try:
        caption, question, answer = (clean_text(caption, "the caption"), clean_text(question, "the question"),
                                     clean_text(answer, "the answer"))
    except RowProblem as exc:
        raise DatasetError(f"{folder}: {exc}") from None
    if not caption and not (question and answer):
        raise ValueError("a correction needs a caption, or a question and its answer")
    if (folder / "metadata.csv").is_file():
        # The reader refuses a folder with both files; a new metadata.jsonl would only hide the CSV rows.
        raise DatasetError(f"{folder}: its rows are in metadata.csv, and teaching adds rows to metadata.jsonl: "
                           "choose another folder to teach into")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    name = f"images/{content_key(image)}.png"
    target = folder / name
    if not target.exists():
        tmp = target.with_suffix(".png.tmp")
        image.convert("RGB").save(tmp, format="PNG")
        os.replace(tmp, target)
    row: dict = {"file_name": name}
    if caption:
        row["caption"] = caption
    if question and answer:
        row["questions"] = [{"question": question, "answer": answer}]
    row["width"], row["height"] = image.size
    with _lock:
        metadata = folder / "metadata.jsonl"
        if metadata.is_file() and metadata.stat().st_size > MAX_FILE_BYTES - 2**16:
            raise DatasetError(f"{metadata}: the file is at the dataset reader's size limit: teach into a new folder")
        old = metadata.read_text(encoding="utf-8") if metadata.is_file() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        tmp = metadata.with_name(".metadata.jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(old + json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, metadata)
    return row
