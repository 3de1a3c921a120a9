"""Fitting a model folder's in-domain check (mmstudio.models.in_domain) on Shapes World scenes.

    fit_in_domain(folder)   # writes folder/in-domain.safetensors and folder/in-domain.json

The recipe calls it on every model it publishes, after the weights are final. Only in-domain scenes are
used, from two seeds: one set fits the cloud of vision features, the other calibrates `in_domain`. Half of
the scenes come from the generator as it is; the other half are redrawn over the spec's whole rendering
range (backgrounds down to 200 and near grey, strong gradients, monochrome noise, softer edges), which
the generator samples only in part: a renderer that draws the corners of the spec must not be flagged.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageFilter

from mmstudio.imaging import load_image
from mmstudio.models.base import LoadOptions
from mmstudio.models.in_domain import FEATURES, FILE, FLAG_BELOW, NOTE, VERSION, InDomainCheck, weights_digest
from mmstudio.models.registry import load_adapter
from mmstudio.storage import disk_errors, share_files, write_json_atomic
from mmstudio.world import Scene, read_metadata, render_scene, sample_scene, scene_rng
from mmstudio.world.scene import MAX_NOISE_SIGMA

FIT_SEED, CALIBRATION_SEED = 3000, 3001  # apart from the recipe's 1, 1000 and 2000
FIT_SCENES, CALIBRATION_SCENES = 3000, 2000
WIDE_SHARE = 0.6
BATCH = 64
MEANING = ("in_domain: the estimated share of Shapes World scenes whose vision features lie at least as far from "
           "the training scenes' as this image's (a conformal p-value on separate calibration scenes, with an "
           "exponential tail). Results below flag_below are flagged as out of the world the model knows.")


def spec_wide(scene: Scene, rng: np.random.Generator) -> Scene:
    """The scene's rendering redrawn over the spec's whole range, where the generator samples only a part."""
    mode = ("uniform", "gradient", "texture")[int(rng.integers(3))]
    kind = rng.random()
    if kind < 0.4:  # any tint
        background = rng.integers(200, 256, 3)
    elif kind < 0.7:  # near grey, down to the darkest background the spec allows
        background = np.clip(rng.integers(200, 256) + rng.integers(-8, 9, 3), 200, 255)
    else:  # near white, the plainest canvas another renderer draws on
        background = np.clip(rng.integers(245, 256) + rng.integers(-3, 4, 3), 200, 255)
    second = background
    if mode == "gradient":  # any two light colours, and a third of them as steep as the spec allows
        second = rng.integers(200, 256, 3)
        if rng.random() < 0.3:
            channel = int(rng.integers(3))
            background[channel], second[channel] = (200, 255) if rng.random() < 0.5 else (255, 200)
    outlines = scene.style.outline_px
    if rng.random() < 0.4:  # some objects outlined, or (half the time) every one of them
        share = 1.0 if rng.random() < 0.5 else 0.5
        outlines = tuple((int(rng.integers(1, 3)) if o.diameter >= 24 else 1) if rng.random() < share else 0
                         for o in scene.objects)
    grey = int(rng.integers(20, 90))
    style = dataclasses.replace(
        scene.style, bg_mode=mode, bg_rgb=tuple(int(v) for v in background), bg_rgb2=tuple(int(v) for v in second),
        texture_amp=float(rng.uniform(3.0, 12.0)) if mode == "texture" else 0.0,
        noise_sigma=0.0 if rng.random() < 0.3 else float(rng.uniform(0.0, MAX_NOISE_SIGMA)),
        antialias=bool(rng.random() < 0.7), outline_px=outlines, outline_rgb=(grey, grey, grey))
    return dataclasses.replace(scene, style=style)


def _finish(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """What other renderers do after drawing: noise the same on every channel, or slightly soft edges."""
    if rng.random() < 0.3:
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels + rng.normal(0.0, rng.uniform(0.0, MAX_NOISE_SIGMA), pixels.shape[:2])[..., None]
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.1:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.7))))
    return image


def in_domain_scenes(count: int, seed: int, wide_share: float = WIDE_SHARE) -> Iterator[Image.Image]:
    """`count` Shapes World scenes: the generator's, and a `wide_share` of them drawn over the spec's range."""
    for index in range(count):
        rng = scene_rng(seed, index)
        scene = sample_scene(rng)
        if rng.random() < wide_share:
            yield _finish(render_scene(spec_wide(scene, rng)), rng)
        else:
            yield render_scene(scene)


def features_of(adapter, images) -> np.ndarray:
    """(count, F) in-domain features of images, in batches (the adapter's own vision pass and pooling)."""
    rows, batch = [], []
    for image in images:
        batch.append(image)
        if len(batch) == BATCH:
            rows.append(adapter.world_features(adapter.image_embeds(batch)))
            batch = []
    if batch:
        rows.append(adapter.world_features(adapter.image_embeds(batch)))
    adapter.clear_caches()  # thousands of scenes seen once each: nothing worth keeping
    return np.concatenate(rows)


def fit_in_domain(folder: Path, *, fit_scenes: int = FIT_SCENES, calibration_scenes: int = CALIBRATION_SCENES,
                  measure: dict[str, Path] | None = None, emit: Callable[[dict], None] | None = None) -> dict:
    """Fit and write the in-domain check of the built-in model in `folder`; returns what in-domain.json says.

    measure: Shapes World dataset folders (the recipe's validation and held-out scenes) whose flagged
    share is recorded beside the check. About 80-90 s a model for the default sizes on a 2-core CPU shared
    with a training job: rendering 5,000 scenes, their vision passes, and the measured sets."""
    folder = Path(folder)
    started = time.monotonic()
    adapter = load_adapter(str(folder), LoadOptions(device="cpu", dtype="fp32"))
    if not adapter.world_checkable():
        adapter.close()
        raise TypeError(f"{folder}: an in-domain check is fitted for the built-in models only (BLIP, and LLaVA "
                        "on a CLIP tower)")
    try:
        fit = features_of(adapter, in_domain_scenes(fit_scenes, FIT_SEED))
        calibration = features_of(adapter, in_domain_scenes(calibration_scenes, CALIBRATION_SEED))
        check = InDomainCheck.fit(fit, calibration)
        measured = {name: _flagged_share(adapter, check, path) for name, path in (measure or {}).items()}
    finally:
        adapter.close()
    record = {
        "kind": "mmstudio in-domain check", "version": VERSION, "features": FEATURES, "meaning": MEANING,
        "flag_below": FLAG_BELOW, "fit_scenes": fit_scenes, "fit_seed": FIT_SEED,
        "calibration_scenes": calibration_scenes, "calibration_seed": CALIBRATION_SEED, "wide_share": WIDE_SHARE,
        "flagged_in_domain": {name: round(value, 4) for name, value in measured.items()},
        "seconds": round(time.monotonic() - started, 1),
    }
    from safetensors.numpy import save_file

    with disk_errors(folder / FILE):
        save_file(check.tensors(), str(folder / FILE),
                  metadata={"version": str(VERSION), "features": FEATURES, "weights": weights_digest(folder)})
    share_files(folder)
    write_json_atomic(folder / NOTE, record)
    if emit:
        emit({"event": "in-domain", "folder": str(folder), **record})
    return record


def _flagged_share(adapter, check: InDomainCheck, dataset: Path) -> float:
    images = (load_image(Path(dataset) / row["file_name"]) for row in read_metadata(dataset))
    values = check.in_domain(features_of(adapter, images))
    return float(np.mean(values < FLAG_BELOW))
