#!/usr/bin/env python
"""Do the built-in models know their limits? The share of pictures each one flags as out of Shapes World.

    python bench/out_of_world.py [--models resources/models] [--count 60] [--scenes 1000] [--record]

For every model folder that ships an in-domain check (in_domain < FLAG_BELOW is flagged):
- pictures that are not Shapes World scenes, made from a seed (tests/out_of_world_images.py: gradients,
  noise, rendered text, landscapes, fractal textures, shaded blobs), scikit-image's sample photos when it
  is installed (the dev extra), and screenshots of real Qt widgets rendered offscreen: target >= 95 %;
- Shapes World scenes, which must not be flagged (target <= 2 %): fresh validation scenes (the recipe's
  seed 2000), the independent renderer (bench/heldout_world.py, seed 77, at any size and at 96 and 256
  px), and corners of the spec that a renderer may well draw (grey 200 or white backgrounds, noise sigma
  8, steep gradients, dark 2 px outlines on every object, aliased edges, canvases of 96 and 256 px).
None of these pictures chose the threshold: it comes from in-domain calibration scenes alone.
--record writes the figures into each folder's in-domain.json and its model card's last section.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmstudio.models.in_domain import FILE, FLAG_BELOW, NOTE  # noqa: E402
from mmstudio.models.registry import load_adapter  # noqa: E402
from mmstudio.world import render_scene, sample_scene, scene_rng  # noqa: E402
from tests.out_of_world_images import corpus  # noqa: E402

VALID_SEED, HELDOUT_SEED, CORNER_SEED, PICTURE_SEED, SCREEN_SEED = 2000, 77, 5000, 21, 41


def heldout_renderer():
    spec = importlib.util.spec_from_file_location("heldout_world", ROOT / "bench" / "heldout_world.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corner(kind: str, rng: np.random.Generator):
    """One generator scene drawn at a corner of the spec's rendering variation."""
    size = {"canvas 96 px": 96, "canvas 256 px, aliased, noise 8": 256}.get(kind)
    scene = sample_scene(rng, size=size)
    style = scene.style
    if kind == "grey 200 background, noise 8":
        grey = int(rng.integers(200, 206))
        style = dataclasses.replace(style, bg_mode="uniform", bg_rgb=(grey,) * 3, noise_sigma=8.0)
    elif kind == "white background, no noise":
        style = dataclasses.replace(style, bg_mode="uniform", bg_rgb=(255, 255, 255), noise_sigma=0.0)
    elif kind == "steep gradient (200 to 255)":
        low, high = rng.integers(200, 256, 3), rng.integers(200, 256, 3)
        channel = int(rng.integers(3))
        low[channel], high[channel] = 200, 255
        style = dataclasses.replace(style, bg_mode="gradient", bg_rgb=tuple(map(int, low)),
                                    bg_rgb2=tuple(map(int, high)))
    elif kind == "dark 2 px outlines on every object":
        style = dataclasses.replace(style, outline_rgb=(20, 20, 20),
                                    outline_px=tuple(2 if o.diameter >= 24 else 1 for o in scene.objects))
    elif kind == "canvas 256 px, aliased, noise 8":
        style = dataclasses.replace(style, antialias=False, noise_sigma=8.0)
    return render_scene(dataclasses.replace(scene, style=style))


CORNERS = ("canvas 96 px", "canvas 256 px, aliased, noise 8", "grey 200 background, noise 8",
           "white background, no noise", "steep gradient (200 to 255)", "dark 2 px outlines on every object")


def in_domain_sets(scenes: int) -> dict[str, list]:
    from PIL import Image

    held = heldout_renderer()
    sets = {"fresh validation scenes (seed 2000)": [render_scene(sample_scene(scene_rng(VALID_SEED, i)))
                                                    for i in range(scenes)],
            "independent renderer (heldout_world.py, seed 77)": [
                Image.fromarray(held.one_scene(HELDOUT_SEED, i, None)[0], "RGB") for i in range(scenes)]}
    small = max(scenes // 5, 20)
    for size in (96, 256):
        sets[f"independent renderer at {size} px"] = [Image.fromarray(held.one_scene(HELDOUT_SEED + size, i, size)[0],
                                                                      "RGB") for i in range(small)]
    for k, kind in enumerate(CORNERS):
        rng = np.random.default_rng([CORNER_SEED, k])
        sets[f"spec corner: {kind}"] = [corner(kind, rng) for _ in range(small)]
    return sets


def out_of_world_sets(count: int) -> dict[str, list]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")  # offscreen: "does not support ..."
    from PySide6.QtWidgets import QApplication

    from tests.ui_screenshots import screenshots

    _app = QApplication.instance() or QApplication([sys.argv[0]])
    sets = corpus(count, PICTURE_SEED)
    # Three times as many: the weakest kind, whose share moves most from sample to sample.
    sets["UI screenshots (real Qt widgets)"] = screenshots(3 * count, SCREEN_SEED)
    return sets


def flagged_share(adapter, images) -> float:
    values = []
    for start in range(0, len(images), 64):
        values += adapter.in_domain(adapter.image_embeds(images[start:start + 64]))
    adapter.clear_caches()
    return float(np.mean(np.array(values) < FLAG_BELOW))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "resources" / "models")
    parser.add_argument("--count", type=int, default=60, help="pictures of each out-of-world kind (3x screenshots)")
    parser.add_argument("--scenes", type=int, default=1000, help="validation and held-out scenes")
    parser.add_argument("--record", action="store_true", help="write the figures into in-domain.json and the card")
    args = parser.parse_args(argv)
    command = "python bench/out_of_world.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    folders = [f for f in sorted(args.models.iterdir()) if (f / FILE).is_file()]
    if not folders:
        print(f"no model folder under {args.models} ships {FILE}", file=sys.stderr)
        return 1
    started = time.monotonic()
    inside, outside = in_domain_sets(args.scenes), out_of_world_sets(args.count)
    print(f"pictures made in {time.monotonic() - started:.0f} s: "
          f"{sum(map(len, inside.values()))} scenes, {sum(map(len, outside.values()))} out of the world")
    figures = {}
    for folder in folders:
        adapter = load_adapter(str(folder))
        figures[folder.name] = {"in_domain": {k: flagged_share(adapter, v) for k, v in inside.items()},
                                "out_of_world": {k: flagged_share(adapter, v) for k, v in outside.items()}}
        adapter.close()
    names = list(figures)
    print(f"\nflagged (in_domain < {FLAG_BELOW}), per model folder\n")
    print(f"| pictures | count | {' | '.join(names)} |")
    print(f"|---|---|{'---|' * len(names)}")
    for part, sets, target in (("in_domain", inside, "<= 2 %"), ("out_of_world", outside, ">= 95 %")):
        for kind, images in sets.items():
            print(f"| {kind} | {len(images)} | " + " | ".join(f"{figures[n][part][kind]:.1%}" for n in names) + " |")
        pooled = {n: np.average([figures[n][part][k] for k in sets], weights=[len(v) for v in sets.values()])
                  for n in names}
        print(f"| **all {part.replace('_', ' ')} (target {target})** | {sum(map(len, sets.values()))} | "
              + " | ".join(f"**{pooled[n]:.1%}**" for n in names) + " |")
    print(f"\n{command}  ({time.monotonic() - started:.0f} s)")
    if args.record:
        from mmstudio.training.model_card import refresh_in_domain_section

        for folder in folders:
            note = json.loads((folder / NOTE).read_text(encoding="utf-8"))
            note["measured"] = {"command": command, "date": datetime.date.today().isoformat(),
                                **{part: {k: round(v, 4) for k, v in values.items()}
                                   for part, values in figures[folder.name].items()}}
            (folder / NOTE).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
            refresh_in_domain_section(folder)
        print(f"recorded in {', '.join(str(f / NOTE) for f in folders)} and their cards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
