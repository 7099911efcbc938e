"""Interactive time-series panels of the report, drawn by bokeh: every recorded step of every
series (no downsampling), zoom and pan along time, linked across the panels of one figure.

bokeh was chosen by measuring a week at 1-minute steps against plotly and uPlot
(benchmarks/report_speed.py has the figures). The page embeds bokeh's JavaScript
(`script()`), so it needs no network; the data of a run are one column source that every
panel of the page shares, so the time axis is stored once per run.
"""

from __future__ import annotations

import numpy as np
from bokeh.embed import components
from bokeh.layouts import gridplot
from bokeh.models import ColumnDataSource, Legend, Span
from bokeh.plotting import figure
from bokeh.resources import Resources

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # matplotlib's tab10, as the PNG figures
DASHES = ("solid", "dashed", "dashdot", "dotted")
WIDTH = 860  # of the plotting area, so that panels line up whatever their legends
HEIGHT = 190
TOOLS = "xpan,xbox_zoom,xwheel_zoom,reset,save"


class Series:
    """One run's time series on the page: its time axis and every column drawn from it."""

    def __init__(self, x: np.ndarray):
        self.source = ColumnDataSource({"x": np.asarray(x, dtype=float)})

    def column(self, key: str, y: np.ndarray) -> str:
        """Add y (one value per step) as column `key` (once: a key names one series)."""
        if key not in self.source.data:
            self.source.data[key] = np.asarray(y, dtype=float)
        return key


def panel(title: str, ylabel: str, relative: bool, x_range=None, log: bool = False,
          width: int = WIDTH, height: int = HEIGHT):
    """An empty time-series panel; panels given the same `x_range` zoom and pan together."""
    shared = {"x_range": x_range} if x_range is not None else {}
    fig = figure(title=title, frame_width=width, frame_height=height, tools=TOOLS, active_drag="xbox_zoom",
                 x_axis_type="linear" if relative else "datetime", y_axis_type="log" if log else "linear",
                 y_axis_label=ylabel, x_axis_label="hours since the run's start" if relative else None, **shared)
    fig.toolbar.logo = None
    fig.xaxis.ticker.desired_num_ticks = max(3, width // 110)
    fig.title.text_font_size = "11pt"
    fig.add_layout(Legend(click_policy="hide", label_text_font_size="8pt", spacing=0, padding=4), "right")
    return fig


def line(fig, series: Series, key: str, y: np.ndarray, label: str | None, color: str,
         dash: str = "solid", width: float = 1.2, markers: bool = False) -> None:
    """A line over the steps; with `markers` also a dot per value, for series with gaps (NaN
    breaks a line, so values between gaps, e.g. one coordinator solve every few steps, would
    not show)."""
    name = series.column(key, y)
    kw = {"legend_label": label} if label else {}
    fig.line("x", name, source=series.source, color=color, line_dash=dash, line_width=width, **kw)
    if markers:
        fig.scatter("x", name, source=series.source, color=color, size=4, **kw)


def band(fig, series: Series, key: str, lo: np.ndarray, hi: np.ndarray, label: str | None, color: str,
         alpha: float = 0.35) -> None:
    """The area between lo and hi at every step (`key`/lo and `key`/hi in the data)."""
    low, high = series.column(f"{key}/lo", lo), series.column(f"{key}/hi", hi)
    kw = {"legend_label": label} if label else {}
    fig.varea("x", low, high, source=series.source, fill_color=color, fill_alpha=alpha, **kw)


def hline(fig, y: float, color: str = "grey", dash: str = "dashed") -> None:
    fig.add_layout(Span(location=y, dimension="width", line_color=color, line_dash=dash, line_width=1))


def stack(figs: list, columns: int = 1):
    """Panels in a grid, one toolbar; legends that stayed empty are removed."""
    for fig in figs:
        if not any(item.label for legend in fig.legend for item in legend.items):
            fig.legend.visible = False
            fig.right = []
    return gridplot(figs, ncols=columns, merge_tools=True, toolbar_location="right")


def script() -> str:
    """bokeh's JavaScript as inline <script> elements (the core bundle is all the panels use)."""
    return Resources(mode="inline", components=["bokeh"]).render_js()


def embed(models: dict[str, object]) -> tuple[str, dict[str, str]]:
    """The <script> that draws the models and a <div> per key."""
    return components(models)
