"""Off-screen rendering set-up shared by every stage that draws with VTK/pyvista."""

from __future__ import annotations

import ctypes.util
import os


def use_headless_backend() -> None:
    """Without an X display, ask VTK for its EGL window directly (when libEGL is there).

    VTK otherwise tries X first, prints "bad X server connection" and only then falls back.
    An explicit ``VTK_DEFAULT_OPENGL_WINDOW`` set by the user is left alone."""
    if not os.environ.get("DISPLAY") and "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ \
            and ctypes.util.find_library("EGL"):
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkEGLRenderWindow"
