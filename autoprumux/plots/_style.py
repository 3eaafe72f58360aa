"""What every plot shares: the four configuration families, colours by N, titles and saving.

Renderers build `matplotlib.figure.Figure` objects directly (never `pyplot`), so the library
holds no global figure state and needs no interactive backend: PNG is drawn by Agg, SVG by the
SVG backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from autoprumux.table import write_atomically

#: Configuration families (`autoprumux.table.family_of`), in legend order: key -> (label, marker).
FAMILIES: dict[str, tuple[str, str]] = {
    "baseline": ("baseline (N = 1, s = 0)", "*"),
    "mux-only": ("multiplexing only (s = 0)", "s"),
    "prune-only": ("pruning only (N = 1)", "^"),
    "prumux": ("PruMUX (N > 1, s > 0)", "o"),
}

#: Colour and line style of each family's Pareto frontier (kept apart from the viridis colours of N).
FRONTIER_STYLES: dict[str, tuple[str, str]] = {
    "baseline": ("black", "-"),
    "mux-only": ("tab:orange", "--"),
    "prune-only": ("tab:brown", ":"),
    "prumux": ("black", "-"),
}

THROUGHPUT_LABEL = "throughput (examples/s, log scale)"
ACCURACY_LABEL = "accuracy (%)"
FORMATS: tuple[str, ...] = ("png", "svg")
_MAX_TITLE_PART = 48


def mux_colors(mux_values: Iterable[int]) -> dict[int, tuple[float, float, float, float]]:
    """One colour per multiplexing width, evenly spaced on viridis (yellow end left out)."""
    widths = sorted(set(int(n) for n in mux_values))
    cmap = colormaps["viridis"]
    if len(widths) == 1:
        return {widths[0]: cmap(0.35)}
    return {n: cmap(0.85 * i / (len(widths) - 1)) for i, n in enumerate(widths)}


def describe_table(rows: pd.DataFrame) -> str:
    """`task: … · model: … · hardware: …` from whichever of those columns the table has ("" if none).

    A column with several values is summarised by their count ("3 tasks"); long hardware
    fingerprints are shortened.
    """
    parts = []
    for column in ("task", "model", "hardware" if "hardware" in rows.columns else "device"):
        if column not in rows.columns:
            continue
        values = sorted(set(rows[column].dropna().astype(str)) - {""})
        if len(values) == 1:
            text = values[0]
            text = text if len(text) <= _MAX_TITLE_PART else text[: _MAX_TITLE_PART - 1] + "…"
            parts.append(f"{column}: {text}")
        elif values:
            parts.append(f"{column}: {len(values)} different")
    return " · ".join(parts)


def title_with_context(title: str, context: str) -> str:
    """A figure title with the table's `task · model · hardware` line under it."""
    return f"{title}\n{context}" if context else title


def save_figure(figure: Figure, out_dir: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `figure` as `out_dir/stem.<format>` for each format; returns the paths.

    The files are reproducible: no creation date, and SVG element ids from a fixed salt, so that
    redrawing the same table leaves committed plots byte-identical."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"

        def draw(tmp: str, fmt: str = fmt) -> None:
            metadata = {"Date": None} if fmt in ("svg", "pdf") else None
            with matplotlib.rc_context({"svg.hashsalt": "autoprumux"}):
                figure.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)

        write_atomically(path, draw)  # an existing plot is never left half-written
        paths.append(path)
    return paths


def percent(value: float) -> float:
    """A fraction as percent (accuracy is stored as a fraction, drawn in percent)."""
    return 100.0 * value
