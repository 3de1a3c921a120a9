"""Writing results out for other tools: captions as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mmstudio.storage import disk_errors, write_text_atomic


def write_captions(path: Path, rows: list[dict]) -> Path:
    """Write rows of {"image", "caption", "tokens"} as CSV (by the suffix) or JSON; atomically.

    Returns the path written. A disk problem is a StorageError naming the path and what to do.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(["image", "caption"])
        writer.writerows([row["image"], row["caption"]] for row in rows)
        text = buffer.getvalue()
    else:
        text = json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    with disk_errors(path.parent, "cannot write the captions to"):
        write_text_atomic(path, text)
    return path
