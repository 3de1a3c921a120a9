"""Clipboard and drop payloads turned into what the core takes."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage


def qimage_to_pil(qimage: QImage) -> Image.Image:
    converted = qimage.convertToFormat(QImage.Format.Format_RGBA8888)
    width, height = converted.width(), converted.height()
    data = np.frombuffer(converted.constBits(), dtype=np.uint8, count=converted.sizeInBytes())
    pixels = data.reshape(height, converted.bytesPerLine())[:, : width * 4].reshape(height, width, 4)
    rgba = Image.fromarray(pixels.copy(), mode="RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")
