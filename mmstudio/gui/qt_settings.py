"""Persistent settings (QSettings) read defensively: a corrupt or foreign value means the default."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings

DEFAULTS = {
    "overlay/colormap": "spotlight",
    "overlay/opacity": 60,
    "overlay/layer": "default",
    "overlay/head": "mean",
    "model/device": "auto",
    "model/dtype": "fp32",
    "model/threads": 0,  # the machine's cores
    "files/last_folder": "",
}


class Settings:
    def __init__(self, settings: QSettings | None = None):
        self._qs = settings or QSettings()

    def get(self, key: str, kind: type = str):
        default = DEFAULTS.get(key, kind())
        try:
            value = self._qs.value(key, default)
            if kind is int:
                return int(value)
            if kind is bool:
                return value in (True, "true", "1", 1)
            return str(value) if value is not None else default
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value) -> None:
        self._qs.setValue(key, value)

    def geometry(self) -> QByteArray | None:
        value = self._qs.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_geometry(self, geometry: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)

    def sync(self) -> None:
        self._qs.sync()
