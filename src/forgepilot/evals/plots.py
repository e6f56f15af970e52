"""Charts for evaluation reports and release dossiers, drawn by matplotlib (extra ``reports``) as inline SVG.

SVG text is embedded in the HTML report, so a report is one self-contained file. Without matplotlib the reports
are written without charts and say which extra draws them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from forgepilot.errors import MissingExtra


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtra("matplotlib", "reports") from exc
    matplotlib.use("Agg")
    # Same bytes for the same figures: no timestamps or random ids in the SVG.
    matplotlib.rcParams["svg.hashsalt"] = "forgepilot"
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def histogram(values: Sequence[float], *, title: str, xlabel: str, marks: Mapping[str, float] | None = None) -> str:
    """A histogram of ``values`` with vertical lines at ``marks`` (p50, p95, an SLO bound...)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.hist(values, bins=min(40, max(5, len(values) // 3)), color="#4c78a8")
    for i, (label, x) in enumerate((marks or {}).items()):
        ax.axvline(x, color=("#e45756", "#f58518", "#54a24b", "#b279a2")[i % 4], linestyle="--", label=label)
    if marks:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests")
    return _svg(fig)


def bars(groups: Mapping[str, Mapping[str, float]], *, title: str, ylabel: str, limit: float | None = None) -> str:
    """Grouped bars: one group per key of ``groups`` (a slice value), one bar per series inside it."""
    plt = _pyplot()
    names = list(groups)
    series = sorted({s for g in groups.values() for s in g})
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) * max(1, len(series)) + 2), 3.2))
    width = 0.8 / max(1, len(series))
    for j, s in enumerate(series):
        xs = [i + j * width for i in range(len(names))]
        ax.bar(xs, [groups[n].get(s, 0.0) for n in names], width=width, label=s)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(names))], names, rotation=20, fontsize=8)
    if limit is not None:
        ax.axhline(limit, color="#e45756", linestyle="--", label="threshold")
    if len(series) > 1 or limit is not None:
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    return _svg(fig)
