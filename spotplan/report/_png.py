"""Writing a matplotlib figure to a PNG: all or nothing (a temp file renamed over the target), and
the figure closed whatever happens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_png(fig: Any, path: Path, dpi: float | None = None) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
