"""Shared fixtures: small real BLIP checkpoints built and saved the hub's way, once per session."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mmstudio.models.base import Task  # noqa: E402


def build_tiny_checkpoint(task: Task, folder: Path, seed: int = 0) -> Path:
    """A tiny BLIP checkpoint whose outputs depend on the image (random weights, wide enough spread)."""
    import torch

    from mmstudio.training.blank import build_model, save_checkpoint
    from mmstudio.world.vocab import all_words

    model, processor = build_model(task, all_words(), "tiny", seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:  # spread the weights so different images give different outputs
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.tie_weights()
    return save_checkpoint(model, processor, folder)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[Task, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {task: build_tiny_checkpoint(task, root / task.value) for task in Task}


@pytest.fixture(scope="session")
def scene_images() -> list[Image.Image]:
    """A few Shapes World scenes of different sizes."""
    from mmstudio.world import render_scene, sample_scene

    rng = np.random.default_rng(7)
    return [render_scene(sample_scene(rng)) for _ in range(5)]


@pytest.fixture()
def photos(tmp_path, scene_images):
    """A folder of the scene images as PNG files."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(scene_images):
        image.save(folder / f"scene{i}.png")
    return folder


@pytest.fixture(scope="session")
def family_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny ViT-GPT2, ViLT and CLIP checkpoints (tests/family_checkpoints.py), built once per session."""
    from tests.family_checkpoints import BUILDERS

    root = tmp_path_factory.mktemp("family-models")
    return {family: build(root / family) for family, build in BUILDERS.items()}


# ------------------------------------------------------------------ the app


@pytest.fixture()
def models(tiny_models) -> dict[Task, str]:
    """The built-in models (what a user gets); tiny ones only where a checkout has none yet."""
    from mmstudio.models.loading import builtin_name
    from mmstudio.resources import builtin_models_dir

    if all((builtin_models_dir() / name).is_dir() for name in ("caption", "vqa", "retrieval")):
        return {task: builtin_name(task) for task in Task}
    return {task: str(path) for task, path in tiny_models.items()}


@pytest.fixture()
def settings(tmp_path, models):
    """The app's settings in a file of the test's own, with `models` chosen."""
    from PySide6.QtCore import QSettings

    from mmstudio.gui.qt_settings import Settings

    qsettings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    for task, name in models.items():
        qsettings.setValue(f"model/{task.value}", name)
    return Settings(qsettings)


@pytest.fixture()
def window(qtbot, settings, tmp_path):
    """The main window with its real worker, shown offscreen."""
    from mmstudio.gui.main_window import MainWindow
    from mmstudio.jobs import JobStore

    win = MainWindow(settings=settings, job_store=JobStore(tmp_path / "jobs.json"))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.client.stop()
