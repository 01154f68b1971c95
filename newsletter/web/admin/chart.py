"""Opens and clicks over time as an SVG drawn on the server: no script, no library, and it
scales to the width of a phone (viewBox, width 100%)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 16, 36
# Human opens, machine opens (a privacy proxy or scanner fetching the pixel, counted apart:
# see the README's "Honest opens") and clicks; the kinds of `engagement_hours` rows.
KINDS = ("open", "machine", "click")
COLOURS = {"open": "#0a4fb8", "machine": "#6b6b6b", "click": "#b3261e"}
LABELS = {"open": "human opens", "machine": "machine opens", "click": "clicks"}
DASHES = {"machine": ' stroke-dasharray="6 4"'}


@dataclass(frozen=True)
class Chart:
    svg: str
    totals: dict[str, int]


def cumulative_chart(series: list[tuple[str, datetime, int]], zone) -> Chart:
    """Running totals of human opens, machine opens and clicks per hour since the first
    event."""
    totals = dict.fromkeys(KINDS, 0)
    if not series:
        return Chart("", totals)
    start = min(hour for _, hour, _ in series)
    end = max(hour for _, hour, _ in series) + timedelta(hours=1)
    span = max((end - start).total_seconds(), 3600.0)
    points: dict[str, list[tuple[datetime, int]]] = {kind: [] for kind in KINDS}
    for kind, hour, count in sorted(series, key=lambda item: item[1]):
        if kind not in totals:
            continue
        totals[kind] += count
        points[kind].append((hour + timedelta(hours=1), totals[kind]))
    peak = max(max(totals.values()), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        return LEFT + plot_w * (moment - start).total_seconds() / span

    def y(value: int) -> float:
        return TOP + plot_h * (1 - value / peak)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'width="100%" role="img" aria-labelledby="chart-title" class="chart">',
        f'<title id="chart-title">Human opens ({totals["open"]}), machine opens '
        f"({totals['machine']}) and clicks ({totals['click']}) over time</title>",
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="currentColor" stroke-opacity="0.4"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" '
        'stroke="currentColor" stroke-opacity="0.4"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="12" '
        f'fill="currentColor">{peak}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="12" '
        'fill="currentColor">0</text>',
        f'<text x="{LEFT}" y="{HEIGHT - 12}" font-size="12" fill="currentColor">'
        f"{escape(start.astimezone(zone).strftime('%a %d %b %H:%M'))}</text>",
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 12}" text-anchor="end" font-size="12" '
        f'fill="currentColor">{escape(end.astimezone(zone).strftime("%a %d %b %H:%M"))}</text>',
    ]
    for kind, kind_points in points.items():
        if not kind_points:
            continue
        coords = [(x(start), y(0))] + [(x(t), y(v)) for t, v in kind_points]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{COLOURS[kind]}" '
            f'stroke-width="2.5"{DASHES.get(kind, "")}/>'
        )
    legend_x = LEFT + 8
    for kind in KINDS:
        parts.append(
            f'<rect x="{legend_x}" y="{TOP}" width="12" height="12" fill="{COLOURS[kind]}"/>'
            f'<text x="{legend_x + 16}" y="{TOP + 11}" font-size="12" fill="currentColor">'
            f"{LABELS[kind]} {totals[kind]}</text>"
        )
        legend_x += 150
    parts.append("</svg>")
    return Chart("".join(parts), totals)
