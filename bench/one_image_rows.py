"""Memory and time of preparing a dataset whose rows all point at one image (issue 16, point 3).

    python bench/one_image_rows.py --rows 100000 --work /tmp/one-image

Builds the folder once (one Shapes World image, N caption rows naming it), then reads the
dataset and builds its pixel store the way a training run does, and prints the peak RSS and
the seconds each part took. Run it in a fresh process: the peak RSS is the process's.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path


def build(folder: Path, rows: int) -> None:
    from mmstudio.world import generate_dataset

    marker = folder / f".rows-{rows}"
    if marker.is_file():
        return
    generate_dataset(folder, 1, seed=0, size=96)
    row = json.loads((folder / "metadata.jsonl").read_text().splitlines()[0])
    with (folder / "metadata.jsonl").open("w", encoding="utf-8") as out:
        for _ in range(rows):
            out.write(json.dumps({"file_name": row["file_name"], "caption": row["caption"]}) + "\n")
    marker.touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/one-image"))
    args = parser.parse_args()
    build(args.work, args.rows)

    from mmstudio.models.base import Task
    from mmstudio.models.blip import load_image_processor
    from mmstudio.models.loading import builtin_name, resolve
    from mmstudio.training.data import PixelStore, read_dataset

    processor = load_image_processor(resolve(builtin_name(Task.CAPTION)).path)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    dataset = read_dataset(args.work, Task.CAPTION)
    read_s = time.monotonic() - started
    started = time.monotonic()
    pixels = PixelStore(dataset, processor)
    pixel_s = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": dataset.rows, "images": len(dataset.images), "examples": len(dataset.examples),
                      "pixel_array_mb": round(pixels.pixels.nbytes / 2**20, 1), "read_s": round(read_s, 1),
                      "pixels_s": round(pixel_s, 1), "rss_before_mb": round(base), "peak_rss_mb": round(peak)}))


if __name__ == "__main__":
    main()
