"""Outlines of the shapes in canvas coordinates (x right, y down, pixels).

`diameter` is the nominal size of an object:
- circle: its diameter;
- square: its side;
- triangle (equilateral, pointing up before rotation): its side;
- star (five points, inner radius 0.45 of outer) and hexagon: the diameter of the
  circle through their outer points.
The center is the rotation center: circle / polygon center (the centroid of the
triangle). Rotation is in degrees, positive turns counter-clockwise on screen.
"""

from __future__ import annotations

import math

import numpy as np

STAR_INNER_RATIO = 0.45

# Radius of the circle through the farthest points, as a fraction of the diameter.
_BOUNDING_RADIUS = {
    "circle": 0.5,
    "square": math.sqrt(0.5),
    "triangle": 1.0 / math.sqrt(3.0),
    "star": 0.5,
    "hexagon": 0.5,
}


def bounding_radius(shape: str, diameter: float) -> float:
    """Radius of a circle around the center that holds the shape at any rotation."""
    return _BOUNDING_RADIUS[shape] * diameter


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices for diameter 1, centered on 0, unrotated, y down."""
    if shape == "square":
        h = 0.5
        return np.array([(-h, -h), (h, -h), (h, h), (-h, h)], dtype=np.float64)
    if shape == "triangle":
        r = 1.0 / math.sqrt(3.0)  # circumradius of a unit-side equilateral triangle
        angles = [-90.0, 30.0, 150.0]  # apex up (negative y)
        return np.array([(r * math.cos(math.radians(a)), r * math.sin(math.radians(a)))
                         for a in angles])
    if shape == "star":
        pts = []
        for i in range(10):
            radius = 0.5 if i % 2 == 0 else 0.5 * STAR_INNER_RATIO
            a = math.radians(-90.0 + 36.0 * i)
            pts.append((radius * math.cos(a), radius * math.sin(a)))
        return np.array(pts)
    if shape == "hexagon":
        return np.array([(0.5 * math.cos(math.radians(a)), 0.5 * math.sin(math.radians(a)))
                         for a in range(0, 360, 60)])
    raise ValueError(f"no polygon for shape {shape!r}")


_UNIT = {s: _unit_polygon(s) for s in ("square", "triangle", "star", "hexagon")}


def polygon(shape: str, center: tuple[float, float], diameter: float,
            rotation: float) -> np.ndarray:
    """(n, 2) vertices of a polygon shape in canvas coordinates."""
    a = math.radians(rotation)
    c, s = math.cos(a), math.sin(a)
    # counter-clockwise on screen with y down: x' = x c + y s, y' = -x s + y c
    rot = np.array([[c, -s], [s, c]])
    return _UNIT[shape] @ rot * diameter + np.asarray(center, dtype=np.float64)


def bbox(shape: str, center: tuple[float, float], diameter: float,
         rotation: float) -> tuple[float, float, float, float]:
    """True axis-aligned bounding box (x0, y0, x1, y1) of the drawn shape."""
    if shape == "circle":
        r = diameter / 2.0
        return (center[0] - r, center[1] - r, center[0] + r, center[1] + r)
    pts = polygon(shape, center, diameter, rotation)
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return (float(x0), float(y0), float(x1), float(y1))
