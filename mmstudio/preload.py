"""Start importing torch and transformers the moment the app launches.

They take seconds to import, and nothing on the window's path needs them, so the
app starts this background import before it builds its window; the imports then
run while Qt starts and paints. The inference worker calls `wait()` before its
first model: no module is ever imported by two threads at once (Python allows
that, but one of them may see a half-initialised module).
"""

from __future__ import annotations

import gc
import importlib
import threading

# What the built-in caption model needs: the first thing the app runs.
MODULES = ("torch", "transformers", "transformers.models.blip.modeling_blip",
           "transformers.models.blip.processing_blip", "transformers.models.blip.image_processing_blip")

_done = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def start(modules: tuple[str, ...] = MODULES) -> None:
    """Begin the imports on a daemon thread (once; later calls do nothing)."""
    global _thread
    with _lock:
        if _thread is not None:
            return
        _thread = threading.Thread(target=_run, args=(modules,), name="mmstudio-preload", daemon=True)
        _thread.start()


def _run(modules: tuple[str, ...]) -> None:
    # Importing torch and transformers makes about a million objects; each full garbage collection
    # over them holds the GIL for 100-400 ms, and the window cannot paint meanwhile. So no collection
    # runs during the imports, and afterwards what they made moves to the permanent generation,
    # which later collections skip (it is all module-level state that lives as long as the app).
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    except Exception:  # noqa: BLE001,S110 - the worker imports them again and reports what fails
        pass
    finally:
        gc.enable()
        gc.freeze()
        _done.set()


def wait() -> None:
    """Block until a started preload has finished; return at once if none was started."""
    if _thread is not None:  # set once, under the lock in start(); reading it needs no lock
        _done.wait()


def ensure() -> None:
    """Import the modules (on the preload thread, started now if the app did not) and wait for them."""
    start()
    wait()
