"""Charts as SVG rendered on the server: readable with JavaScript off, nothing fetched from anywhere.

Each chart takes plain numbers (what the page's JSON endpoint also returns) and gives back SVG markup; labels are
escaped. The SVG carries ``data-*`` attributes with its series, so a test (or a screen reader) can read the numbers
the chart was drawn from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 52, 16, 16, 34
COLOURS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float | None]]  # (x, y); None leaves a gap


def _scale(value: float, low: float, high: float, out_low: float, out_high: float) -> float:
    if high == low:
        return (out_low + out_high) / 2
    return out_low + (value - low) * (out_high - out_low) / (high - low)


def _fmt(value: float, percent: bool) -> str:
    if percent:
        return f"{value:.0%}"
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2g}"


def _frame(title: str, data: object, body: list[str], width: int, height: int, *, natural: bool = False) -> Markup:
    """``natural``: drawn at its own size (a small graph is not blown up to the page's width)."""
    payload = escape(json.dumps(data, separators=(",", ":")))
    size = f'width="{width}" height="{height}" class="chart natural"' if natural else 'width="100%" class="chart"'
    return Markup(
        f"<figcaption>{escape(title)}</figcaption>"
        f'<svg {size} role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'data-chart="{payload}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    percent: bool = False,
    y_min: float | None = 0.0,
    y_max: float | None = None,
    time_axis: bool = True,
    reference: float | None = None,
) -> Markup:
    """Lines over x (unix seconds when ``time_axis``), a legend, and an optional dashed ``reference`` level."""
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points if y is not None]
    if reference is not None:
        ys.append(reference)
    body: list[str] = []
    if not xs or not ys:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="empty" text-anchor="middle">no data yet</text>')
        return _frame(title, {"series": []}, body, WIDTH, HEIGHT)
    x0, x1 = min(xs), max(xs)
    lo = min(ys) if y_min is None else min(y_min, min(ys))
    hi = max(ys) if y_max is None else y_max
    hi = hi if hi > lo else lo + 1
    left, right, top, bottom = PAD_LEFT, WIDTH - PAD_RIGHT, PAD_TOP, HEIGHT - PAD_BOTTOM
    for i in range(5):  # horizontal grid with labels
        v = lo + (hi - lo) * i / 4
        y = _scale(v, lo, hi, bottom, top)
        body.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v, percent)}</text>')
    for i in range(4 if x1 > x0 else 1):
        at = x0 + (x1 - x0) * i / 3 if x1 > x0 else x0
        x = _scale(at, x0, x1, left, right)
        label = time.strftime("%d %b %H:%M", time.localtime(at)) if time_axis else _fmt(at, False)
        body.append(f'<text x="{x:.1f}" y="{HEIGHT - 12}" text-anchor="middle">{escape(label)}</text>')
    if reference is not None:
        y = _scale(reference, lo, hi, bottom, top)
        body.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="reference"/>')
    for n, s in enumerate(series):
        colour = COLOURS[n % len(COLOURS)]
        path: list[str] = []
        pen_up = True
        for px_value, py_value in s.points:
            if py_value is None:
                pen_up = True
                continue
            px, py = _scale(px_value, x0, x1, left, right), _scale(py_value, lo, hi, bottom, top)
            path.append(f"{'M' if pen_up else 'L'}{px:.1f},{py:.1f}")
            pen_up = False
            body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>')
        if path:
            body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body.append(
            f'<text x="{left + 8 + 150 * n}" y="{top + 10}" fill="{colour}" class="legend">{escape(s.name)}</text>'
        )
    data = {"series": [{"name": s.name, "points": [list(p) for p in s.points]} for s in series]}
    return _frame(title, data, body, WIDTH, HEIGHT)


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    percent: bool = False,
    reference: float | None = None,
) -> Markup:
    """Grouped bars: for each group, one bar per series (e.g. reference vs current share per language)."""
    values = [v for _, vs in series for v in vs]
    body: list[str] = []
    if not groups or not values:
        body.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" class="empty" text-anchor="middle">no data yet</text>')
        return _frame(title, {"groups": [], "series": []}, body, WIDTH, HEIGHT)
    hi = max([*values, reference or 0.0]) or 1.0
    left, right, top, bottom = PAD_LEFT, WIDTH - PAD_RIGHT, PAD_TOP + 14, HEIGHT - PAD_BOTTOM
    slot = (right - left) / len(groups)
    bar = slot * 0.8 / max(1, len(series))
    for i in range(5):
        v = hi * i / 4
        y = _scale(v, 0, hi, bottom, top)
        body.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v, percent)}</text>')
    for g, group in enumerate(groups):
        x = left + slot * g + slot * 0.1
        for n, (name, vs) in enumerate(series):
            v = vs[g] if g < len(vs) else 0.0
            y = _scale(v, 0, hi, bottom, top)
            colour = COLOURS[n % len(COLOURS)]
            body.append(
                f'<rect x="{x + bar * n:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{bottom - y:.1f}" '
                f'fill="{colour}"><title>{escape(name)} {escape(group)}: {_fmt(v, percent)}</title></rect>'
            )
        label = group if len(group) <= 14 else group[:13] + "…"
        body.append(f'<text x="{x + slot * 0.4:.1f}" y="{HEIGHT - 12}" text-anchor="middle">{escape(label)}</text>')
    if reference is not None:
        y = _scale(reference, 0, hi, bottom, top)
        body.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="reference"/>')
    for n, (name, _) in enumerate(series):
        body.append(
            f'<text x="{left + 8 + 150 * n}" y="{PAD_TOP + 4}" fill="{COLOURS[n % len(COLOURS)]}" class="legend">'
            f"{escape(name)}</text>"
        )
    data = {"groups": list(groups), "series": [{"name": n, "values": list(vs)} for n, vs in series]}
    return _frame(title, data, body, WIDTH, HEIGHT)


def lineage_graph(title: str, root: dict[str, Any]) -> Markup:
    """A registry lineage tree drawn left to right: one column per level, an arrow per relation."""
    levels: list[list[dict[str, Any]]] = []
    edges: list[tuple[int, int, int, int, str]] = []  # (level, index) -> (level + 1, index), relation

    def place(node: dict[str, Any], level: int) -> int:
        while len(levels) <= level:
            levels.append([])
        levels[level].append(node)
        here = len(levels[level]) - 1
        for link in node.get("links", []):
            child = place(link, level + 1)
            edges.append((level, here, level + 1, child, str(link.get("relation", ""))))
        return here

    place(root, 0)
    col, row, box_w, box_h = 230, 46, 190, 30
    width = 20 + col * len(levels)
    height = 20 + row * max(len(nodes) for nodes in levels)
    body: list[str] = []
    for l1, i1, l2, i2, relation in edges:
        x1, y1 = 10 + col * l1 + box_w, 10 + row * i1 + box_h / 2
        x2, y2 = 10 + col * l2, 10 + row * i2 + box_h / 2
        body.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="edge"/>')
        mid_x, mid_y = (x1 + x2) / 2, (y1 + y2) / 2 - 3
        body.append(f'<text x="{mid_x:.0f}" y="{mid_y:.0f}" text-anchor="middle">{escape(relation)}</text>')
    for level, nodes in enumerate(levels):
        for i, node in enumerate(nodes):
            x, y = 10 + col * level, 10 + row * i
            label = f"{node.get('type', '')}: {node.get('name') or node.get('id', '')}"
            label = label if len(label) <= 27 else label[:26] + "…"
            body.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="4" class="node"/>')
            body.append(f'<text x="{x + 6}" y="{y + 19}" class="legend" fill="#111827">{escape(label)}</text>')
    data = {"nodes": sum(len(n) for n in levels), "edges": len(edges)}
    return _frame(title, data, body, width, height, natural=True)
