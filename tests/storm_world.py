"""What a storm of random requests is made of, and what must become of each request.

A `World` holds good and broken image files, pasted pixels, good models per task
(tiny checkpoints, plus the built-in ones when the checkout has them) and broken
model folders. `random_plan` draws one request from it, together with its `Expect`:
the outcome the request must have unless it is cancelled. The expectation follows
from the request alone, because a failed model load never changes the model in use.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mmstudio.errors import ImageLoadError, MMStudioError, ModelLoadError, ModelNotFoundError, UnsupportedTaskError
from mmstudio.models.base import Task
from mmstudio.requests import (
    AskOutcome,
    AskRequest,
    CaptionOutcome,
    CaptionRequest,
    ImageRef,
    LoadModelRequest,
    MatchOutcome,
    MatchRequest,
    ModelOutcome,
    Request,
    SearchOutcome,
    SearchRequest,
)

QUESTIONS = (
    "what color is the circle?", "how many objects are there?", "is there a red star?", "what shape is left?",
    "", "   ", "?", "\n\t", "ünïcödé 💥 ？", "what " * 80, "x" * 3000,
)
TEXTS = (
    "a small red circle", "a large blue star", "two green squares", "a yellow triangle on the left",
    "", " ", "🙂", "red " * 120,
)
QUERIES = ("a red circle", "blue", "two stars", "", "  ", "ünïcödé", "circle " * 100)


# ---------------------------------------------------------------- broken model folders

BROKEN_KINDS = ("missing-config", "truncated-weights", "pickle-only", "wrong-architecture", "empty", "missing",
                "a-file")


def make_broken_models(good: Path, root: Path) -> dict[str, Path]:
    """Broken copies of the good checkpoint `good`, one per kind; named so an error message can be traced."""
    import torch
    from safetensors.torch import load_file

    root.mkdir(parents=True, exist_ok=True)
    folders = {kind: root / f"broken-{kind}" for kind in BROKEN_KINDS}
    for kind in ("missing-config", "truncated-weights", "pickle-only", "wrong-architecture"):
        shutil.copytree(good, folders[kind])
    (folders["missing-config"] / "config.json").unlink()
    weights = folders["truncated-weights"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    pickled = folders["pickle-only"]
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    config_file = folders["wrong-architecture"] / "config.json"
    config = json.loads(config_file.read_text())
    config.update(model_type="llama", architectures=["LlamaForCausalLM"])
    config_file.write_text(json.dumps(config))
    folders["empty"].mkdir()
    folders["a-file"].write_text("not a model")
    return folders


def broken_model_error(kind: str) -> type[MMStudioError]:
    return ModelNotFoundError if kind == "missing" else ModelLoadError


# ---------------------------------------------------------------- the world


@dataclass(frozen=True)
class World:
    good_images: tuple[ImageRef, ...]
    bad_images: tuple[ImageRef, ...]
    models: dict[Task, tuple[str, ...]]  # good models per task
    broken: dict[str, Path]  # kind -> broken model folder

    def is_bad(self, ref: ImageRef) -> bool:
        return ref in self.bad_images


def build_world(root: Path, tiny_models: dict[Task, Path], *, builtin: bool) -> World:
    """Image files under `root`, the tiny models, and (if `builtin`) the built-in models where present."""
    from mmstudio.models.loading import builtin_name
    from mmstudio.resources import builtin_models_dir
    from mmstudio.world import render_scene, sample_scene

    folder = root / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(11)
    scenes = [render_scene(sample_scene(rng)) for _ in range(4)]
    good = []
    for i, scene in enumerate(scenes):
        path = folder / f"scene{i}.png"
        scene.save(path)
        good.append(ImageRef(str(path), path))
    scenes[0].save(folder / "scene0.jpg", quality=85)
    scenes[1].convert("P").save(folder / "scene1.gif")
    good += [ImageRef(str(folder / name), folder / name) for name in ("scene0.jpg", "scene1.gif")]
    pasted = [Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)), scenes[2].copy(),
              Image.new("RGB", (1, 1), (200, 10, 10))]
    good += [ImageRef(f"clipboard:{i}", pixels=image) for i, image in enumerate(pasted)]

    bad_files = {
        "truncated.png": (folder / "scene0.png").read_bytes()[:300],
        "notes.txt": b"not an image",
        "empty.png": b"",
        "huge.png": _png_claiming(60_000, 60_000),
    }
    for name, data in bad_files.items():
        (folder / name).write_bytes(data)
    (folder / "a-folder.png").mkdir()
    bad_paths = [folder / name for name in (*bad_files, "a-folder.png", "missing.png")]
    bad = tuple(ImageRef(str(path), path) for path in bad_paths)

    models = {task: (str(path),) for task, path in tiny_models.items()}
    if builtin:
        for task in Task:
            name = builtin_name(task)
            if (builtin_models_dir() / name.split(":", 1)[1]).is_dir():
                models[task] += (name,)
    broken = make_broken_models(tiny_models[Task.CAPTION], root / "models")
    return World(tuple(good), bad, models, broken)


def _png_claiming(width: int, height: int) -> bytes:
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


# ---------------------------------------------------------------- plans


@dataclass(frozen=True)
class Expect:
    error: type[MMStudioError] | None = None  # None: the request finishes
    mentions: str = ""  # what the error message must name (the file, the folder, the model)


@dataclass(frozen=True)
class Plan:
    request: Request
    expect: Expect
    bad_keys: frozenset[str] = field(default_factory=frozenset)  # images that must fail on their own


def random_plan(rng: random.Random, world: World) -> Plan:
    kind = rng.choices(["caption", "ask", "match", "search", "load"], weights=[25, 22, 22, 12, 19])[0]
    return {"caption": _caption, "ask": _ask, "match": _match, "search": _search, "load": _load}[kind](rng, world)


def _model_choice(rng: random.Random, world: World, task: Task) -> tuple[str | None, Expect]:
    """The `model` field of a task request: mostly the model in use, else a named good, wrong or broken one."""
    roll = rng.random()
    if roll < 0.6:
        return None, Expect()
    if roll < 0.8:
        return rng.choice(world.models[task]), Expect()
    if roll < 0.92:
        name = rng.choice(world.models[rng.choice([t for t in Task if t != task])])
        return name, Expect(UnsupportedTaskError, name)
    kind = rng.choice(BROKEN_KINDS)
    return str(world.broken[kind]), Expect(broken_model_error(kind), world.broken[kind].name)


def _image(rng: random.Random, world: World, bad_share: float = 0.2) -> ImageRef:
    return rng.choice(world.bad_images if rng.random() < bad_share else world.good_images)


def _images(rng: random.Random, world: World, most: int) -> tuple[ImageRef, ...]:
    pool = list(world.good_images) + list(world.bad_images)
    return tuple(rng.sample(pool, rng.randint(0, most)))


def _caption(rng: random.Random, world: World) -> Plan:
    images = _images(rng, world, 4)
    model, expect = _model_choice(rng, world, Task.CAPTION)
    request = CaptionRequest(images, attention=rng.random() < 0.5, batch_size=rng.choice([1, 2, 16]), model=model)
    if not any(not world.is_bad(ref) for ref in images):
        expect = Expect()  # no image loads, so no model is asked for
    return Plan(request, expect, frozenset(ref.key for ref in images if world.is_bad(ref)))


def _ask(rng: random.Random, world: World) -> Plan:
    image = _image(rng, world)
    model, expect = _model_choice(rng, world, Task.VQA)
    request = AskRequest(image, rng.choice(QUESTIONS), attention=rng.random() < 0.5, model=model)
    if world.is_bad(image):  # the image is read before the model is looked up
        expect = Expect(ImageLoadError, image.key)
    return Plan(request, expect)


def _match(rng: random.Random, world: World) -> Plan:
    image = _image(rng, world)
    model, expect = _model_choice(rng, world, Task.ITM)
    texts = tuple(rng.choice(TEXTS) for _ in range(rng.randint(0, 3)))
    request = MatchRequest(image, texts, attention=rng.random() < 0.5, model=model)
    if world.is_bad(image):
        expect = Expect(ImageLoadError, image.key)
    return Plan(request, expect)


def _search(rng: random.Random, world: World) -> Plan:
    images = _images(rng, world, 5)
    model, expect = _model_choice(rng, world, Task.ITM)
    request = SearchRequest(images, rng.choice(QUERIES), top_k=rng.choice([-1, 0, 1, 3, 10]), model=model)
    return Plan(request, expect, frozenset(ref.key for ref in images if world.is_bad(ref)))


def _load(rng: random.Random, world: World) -> Plan:
    task = rng.choice(list(Task))
    roll = rng.random()
    if roll < 0.6:
        return Plan(LoadModelRequest(task, rng.choice(world.models[task])), Expect())
    if roll < 0.75:
        name = rng.choice(world.models[rng.choice([t for t in Task if t != task])])
        return Plan(LoadModelRequest(task, name), Expect(UnsupportedTaskError, name))
    kind = rng.choice(BROKEN_KINDS)
    folder = world.broken[kind]
    return Plan(LoadModelRequest(task, str(folder)), Expect(broken_model_error(kind), folder.name))


# ---------------------------------------------------------------- checks


def check_failure(plan: Plan, error: BaseException) -> str | None:
    """Why this failure is wrong for the plan, or None when it is the expected one."""
    if getattr(error, "details", None):  # the worker's mark of an unexpected exception: a bug
        return f"bug: {type(error).__name__}: {error}\n{error.details}"
    if plan.expect.error is None:
        return f"expected a result, got {type(error).__name__}: {error}"
    if not isinstance(error, plan.expect.error):
        return f"expected {plan.expect.error.__name__}, got {type(error).__name__}: {error}"
    if plan.expect.mentions not in str(error):
        return f"the message does not name {plan.expect.mentions!r}: {error}"
    return None


def check_result(plan: Plan, outcome) -> str | None:
    """Why this outcome is wrong for the plan, or None when it is right."""
    if plan.expect.error is not None:
        return f"expected {plan.expect.error.__name__}, got a result"
    request = plan.request
    if outcome.request is not request:
        return "the outcome carries another request"
    checks = {CaptionRequest: (CaptionOutcome, _caption_problem), AskRequest: (AskOutcome, _ask_problem),
              MatchRequest: (MatchOutcome, _match_problem), SearchRequest: (SearchOutcome, _search_problem),
              LoadModelRequest: (ModelOutcome, _load_problem)}
    kind, problem = checks[type(request)]
    if not isinstance(outcome, kind):
        return f"expected a {kind.__name__}, got {type(outcome).__name__}"
    return problem(plan, outcome)


def _caption_problem(plan: Plan, outcome: CaptionOutcome) -> str | None:
    if tuple(item.image for item in outcome.items) != plan.request.images:
        return "caption items do not follow the request's images"
    for item in outcome.items:
        if item.image.key in plan.bad_keys:
            if item.result is not None or not item.error or item.image.key not in item.error:
                return f"{item.image.key} should have failed on its own, naming the file"
        elif item.error or not isinstance(item.result.caption, str):
            return f"{item.image.key} got no caption: {item.error}"
    return None


def _ask_problem(plan: Plan, outcome: AskOutcome) -> str | None:
    result = outcome.result
    if result.question != plan.request.question or not isinstance(result.answer, str):
        return f"answer for another question, or no answer: {result.question!r}"
    return None


def _match_problem(plan: Plan, outcome: MatchOutcome) -> str | None:
    if [r.text for r in outcome.results] != list(plan.request.texts):
        return "match results do not follow the texts"
    if not all(0.0 <= r.itm <= 1.0 for r in outcome.results):
        return "an ITM probability outside [0, 1]"
    return None


def _search_problem(plan: Plan, outcome: SearchOutcome) -> str | None:
    request = plan.request
    good = [ref.key for ref in request.images if ref.key not in plan.bad_keys]
    if [name for name, _ in outcome.report.failed] != [ref.key for ref in request.images if ref.key in plan.bad_keys]:
        return f"search reported other failures: {outcome.report.failed}"
    if outcome.report.images != len(good):
        return f"search indexed {outcome.report.images} images of {len(good)} readable"
    if [hit.rank for hit in outcome.hits] != list(range(1, min(max(request.top_k, 0), len(good)) + 1)):
        return f"search gave ranks {[hit.rank for hit in outcome.hits]} for top_k={request.top_k}"
    if not {hit.image.key for hit in outcome.hits} <= set(good):
        return "a search hit that is not a readable image of the request"
    return None


def _load_problem(plan: Plan, outcome: ModelOutcome) -> str | None:
    if plan.request.task not in outcome.info.tasks:
        return f"loaded a model that does not do {plan.request.task.value}"
    return None
