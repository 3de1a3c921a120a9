"""How far an image lies from the world a built-in model was trained on, as a probability-like `in_domain`.

The built-in models know Shapes World only, yet caption a photo as confidently as a scene. Their own vision
pass tells the two apart: the CLS token, the mean patch token and the patch tokens' spread (per dimension)
of the vision encoder's last hidden state sit in a tight cloud for scenes and far outside it for photos,
text or screenshots (the spread is what sets a sparse light window apart: without it 4 % of screenshots
passed). A model folder that ships `in-domain.safetensors` (written by mmstudio.training.in_domain_fit)
holds that cloud's mean and whitening (a Mahalanobis distance) and the sorted distances of separate
in-domain calibration scenes.

`in_domain` is a conformal p-value: the share of calibration scenes at least as far out as the image,
with an exponential tail past the 90th percentile so that it keeps falling smoothly beyond the farthest
calibration scene. An image is flagged when it is below FLAG_BELOW; by construction about that share of
in-domain scenes are flagged, whatever the model, so one threshold serves every folder. Pure numpy.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "in-domain.safetensors"
NOTE = "in-domain.json"
VERSION = 1
FEATURES = "cls+mean+std"  # of the vision encoder's last hidden state: CLS, patch tokens' mean and std
# 0.1 % of in-domain scenes by construction, a twentieth of the 2 % budget: the rest is margin for
# renderers other than the one the check was fitted on. At 0.002 the spec's corners (steep gradients, dark
# outlines on every object) came out at up to 2.5 % for the VQA model, at 0.001 at 1.5 %; photos, text and
# screenshots lie near 1e-13 and far below, so the margin costs little.
FLAG_BELOW = 0.001
TAIL_FROM = 0.9  # the exponential tail replaces the empirical share past this calibration quantile
log = logging.getLogger(__name__)


def out_of_world(in_domain: float | None) -> bool:
    """Whether a result's `in_domain` flags its image (None: the model has no check, so never)."""
    return in_domain is not None and in_domain < FLAG_BELOW


def weights_digest(folder: Path) -> str:
    """A digest of the folder's model weights: a check fitted on other weights would say nothing true."""
    digest = hashlib.blake2b(digest_size=16)
    for file in sorted(Path(folder).glob("model*.safetensors")):
        digest.update(file.name.encode())
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(2**20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class InDomainCheck:
    mean: np.ndarray  # (F,)
    whiten: np.ndarray  # (F, F): |(x - mean) @ whiten| is the Mahalanobis distance
    calibration: np.ndarray  # (n,) sorted distances of in-domain calibration scenes
    tail_start: float  # the calibration distance at TAIL_FROM
    tail_scale: float  # mean excess of the calibration distances over tail_start

    @classmethod
    def fit(cls, features: np.ndarray, calibration_features: np.ndarray, shrink: float = 0.01) -> "InDomainCheck":
        """Fit the cloud on one set of in-domain features and calibrate on another (never the same scenes).

        The covariance is shrunk toward its mean variance: directions the fit scenes barely vary in
        (a background never quite grey) would otherwise flag any scene that moves in them at all.
        """
        features = np.asarray(features, dtype=np.float64)
        mean = features.mean(axis=0)
        cov = np.cov(features - mean, rowvar=False)
        cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
        values, vectors = np.linalg.eigh(cov)
        whiten = vectors / np.sqrt(np.maximum(values, 1e-12))
        partial = cls(mean, whiten, np.zeros(1), 0.0, 1.0)
        distances = np.sort(partial.distance(calibration_features))
        start = float(np.quantile(distances, TAIL_FROM))
        excess = distances[distances > start] - start
        scale = float(excess.mean()) if excess.size else 1.0
        return cls(mean, whiten, distances, start, max(scale, 1e-6))

    def distance(self, features: np.ndarray) -> np.ndarray:
        centred = np.asarray(features, dtype=np.float64) - self.mean
        return np.linalg.norm(centred @ self.whiten, axis=-1)

    def probability(self, distances: np.ndarray) -> np.ndarray:
        """in_domain of each distance: the calibration share at least that far, smoothly extended."""
        distances = np.asarray(distances, dtype=np.float64)
        n = len(self.calibration)
        # Fractional rank among the sorted calibration distances; (rank + 1) / (n + 1) is the conformal p-value.
        at_least = n - np.interp(distances, self.calibration, np.arange(1, n + 1), left=0.0, right=n)
        empirical = (at_least + 1) / (n + 1)
        share_in_tail = (n - np.interp(self.tail_start, self.calibration, np.arange(1, n + 1)) + 1) / (n + 1)
        tail = share_in_tail * np.exp(-(distances - self.tail_start) / self.tail_scale)
        return np.clip(np.where(distances > self.tail_start, tail, empirical), 0.0, 1.0)

    def in_domain(self, features: np.ndarray) -> np.ndarray:
        return self.probability(self.distance(features))

    @property
    def dimension(self) -> int:
        return len(self.mean)

    # ----------------------------------------------------------------- files

    def tensors(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean.astype(np.float32), "whiten": self.whiten.astype(np.float32),
                "calibration": self.calibration.astype(np.float32),
                "tail": np.array([self.tail_start, self.tail_scale], dtype=np.float32)}


def read_in_domain(folder: Path, dimension: int | None = None) -> InDomainCheck | None:
    """The folder's check, or None: absent (most models), unreadable, or fitted on other weights (noted)."""
    file = Path(folder) / FILE
    if not file.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(file), framework="numpy") as stored:
            meta = stored.metadata() or {}
            arrays = {key: stored.get_tensor(key) for key in stored.keys()}
        check = InDomainCheck(arrays["mean"].astype(np.float64), arrays["whiten"].astype(np.float64),
                              np.sort(arrays["calibration"].astype(np.float64)), float(arrays["tail"][0]),
                              float(arrays["tail"][1]))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own kinds for a damaged file
        log.warning("%s: ignored (%s); results of this model carry no in_domain", file, exc)
        return None
    problem = _problem(check, meta, folder, dimension)
    if problem:
        log.warning("%s: ignored (%s); results of this model carry no in_domain", file, problem)
        return None
    return check


def _problem(check: InDomainCheck, meta: dict, folder: Path, dimension: int | None) -> str | None:
    if meta.get("version") != str(VERSION) or meta.get("features") != FEATURES:
        return f"written for features {meta.get('features')!r}, version {meta.get('version')!r}"
    size = check.dimension
    if check.whiten.shape != (size, size) or check.calibration.ndim != 1 or len(check.calibration) < 10:
        return "its arrays do not fit together"
    if not (np.isfinite(check.mean).all() and np.isfinite(check.whiten).all() and check.tail_scale > 0):
        return "it holds numbers that are not finite"
    if dimension is not None and size != dimension:
        return f"fitted on {size} features, the model gives {dimension}"
    if meta.get("weights") != weights_digest(folder):
        return "fitted on other weights: refit it with mmstudio.training.in_domain_fit.fit_in_domain"
    return None
