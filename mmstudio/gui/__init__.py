"""The desktop app (PySide6). The only package of mmstudio that imports Qt."""
