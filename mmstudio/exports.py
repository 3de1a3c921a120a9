"""Writing results out for other tools: captions as JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from mmstudio.errors import MMStudioError


def write_captions(path: Path, rows: list[dict]) -> Path:
    """Write rows of {"image", "caption", "tokens"} as CSV (by the suffix) or JSON; atomically.

    Returns the path written. A disk problem is an MMStudioError naming the path.
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
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        # newline="": the CSV writer already ended its rows with \r\n, as the format asks
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MMStudioError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
