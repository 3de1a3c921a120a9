"""mmstudio: a desktop studio for image multimodal models.

The core (everything outside `mmstudio.gui`) is pure Python and never imports Qt.
"""

__version__ = "0.1.0"
