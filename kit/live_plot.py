"""The live plot: temperature and humidity of one thing against time, history first, then live.

Readings are queued from any thread and drawn on the kernel's own thread at most ten times a
second (kit.widgets redraws it with the rest of the dashboard).
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import bqplot
import ipywidgets as widgets
import numpy as np

from kit import telemetry

# Okabe-Ito: told apart by every kind of colour vision, and on a washed-out projector.
BLUE, ORANGE = "#0072B2", "#E69F00"
BIG = {"font-size": "16px"}
MAX_REDRAWS_PER_SECOND = 10
# The smallest span a value axis shows: sensor noise of 0.1 °F must not look like a swing.
MIN_SPAN = {"temperature": 2.0, "humidity": 5.0}


def _line(x: Any, y: Any, color: str, label: str, **style: Any) -> Any:
    """One series of the plot (a bqplot.Lines), empty until readings arrive."""
    return bqplot.Lines(
        x=np.array([], dtype="datetime64[ms]"),
        y=[],
        scales={"x": x, "y": y},
        colors=[color],
        stroke_width=3,
        labels=[label],
        # No legend: inside the plot it covers the newest points. The value axes name the lines
        # in the lines' colours instead.
        display_legend=False,
        **style,
    )


def _at_least(low: float, high: float, span: float) -> tuple[float, float]:
    """The range [low, high], widened around its middle to at least `span`."""
    if high - low >= span:
        return low, high
    middle = (low + high) / 2
    return middle - span / 2, middle + span / 2


# Time ticks a step apart, the step the smallest of these (in seconds) that keeps the labels few
# enough to read side by side on a plot 600 px wide (440 px between the value axes): a label
# "12:34:56" in 16 px type takes about 80 px, "12:34" about 50, "Mon 12:00" about 90.
TICK_STEPS = (
    (1, 2, 5, 10, 15, 30),
    (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200),
    (43200,),
    (86400, 172800, 345600, 604800),
)
TICK_FORMATS = ("%H:%M:%S", "%H:%M", "%a %H:%M", "%d %b")
MAX_TICKS = (4, 6, 4, 5)


def time_ticks(low: float, high: float) -> tuple[list[float], str]:
    """Where to put the time axis' ticks between two Unix times, and their strftime format.

    The ticks fall on round local times (every 5 s, every 15 min, every 6 h ...), so labels
    never repeat or crowd one another, whatever the span: seconds to days.
    """
    offset = time.localtime(low).tm_gmtoff  # round in local time (a half-hour zone too)
    # Whole weeks, enough of them that any span gets at most MAX_TICKS[-1] ticks.
    weeks = 604800 * max(1, math.ceil((high - low) / 604800 / (MAX_TICKS[-1] - 1)))
    groups = (*TICK_STEPS[:-1], (*TICK_STEPS[-1], weeks))
    for steps, format, most in zip(groups, TICK_FORMATS, MAX_TICKS, strict=True):
        if format == "%H:%M" and high - low > 86400:
            continue  # over a day, hours repeat: the day too
        for step in steps:
            first = math.ceil((low + offset) / step) * step - offset
            count = int((high - first) // step) + 1 if high >= first else 0
            if count <= most:
                return [first + i * step for i in range(count)] or [low], format
    raise AssertionError("unreachable: the last step fits any span")


def _value_axis(scale: Any, side: str, label: str, color: str) -> Any:
    """A value axis in its series' colour, large enough to read on a projector."""
    return bqplot.Axis(
        scale=scale, side=side, label=label, tick_style=BIG, color=color, label_offset="50px"
    )


class LivePlot:
    """Temperature and humidity of one thing against time: history first, then live."""

    def __init__(self, window: int = 600, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._points: deque[telemetry.Reading] = deque(maxlen=window)  # bounded memory
        self._lock = threading.Lock()
        self._dirty = False
        self._last_draw = float("-inf")
        self.redraws = 0
        self.thing = ""
        x = bqplot.DateScale()
        y_temperature, y_humidity = bqplot.LinearScale(), bqplot.LinearScale()
        self.scales = {"temperature": y_temperature, "humidity": y_humidity}
        self.temperature = _line(x, y_temperature, BLUE, "temperature (°F)")
        self.humidity = _line(x, y_humidity, ORANGE, "humidity (%)", line_style="dashed")
        self.time_axis = bqplot.Axis(
            scale=x, label="time", tick_style=BIG, label_offset="40px", tick_format="%H:%M:%S"
        )
        axes = [
            self.time_axis,
            _value_axis(y_temperature, "left", "temperature (°F)", BLUE),
            _value_axis(y_humidity, "right", "humidity (%)", ORANGE),
        ]
        self.figure = bqplot.Figure(
            marks=[self.temperature, self.humidity],
            axes=axes,
            title="Temperature and humidity",
            title_style={"font-size": "20px"},
            fig_margin={"top": 50, "bottom": 60, "left": 80, "right": 80},
            # bqplot's pan, zoom and save buttons sat over the title's device name.
            display_toolbar=False,
            layout=widgets.Layout(width="100%", height="420px"),
        )

    def show_thing(self, thing: str) -> None:
        """Start over for `thing`: no points, its name in the title."""
        with self._lock:
            self._points.clear()
            self._dirty = True
            self._last_draw = float("-inf")
        self.thing = thing
        self.figure.title = f"Temperature and humidity of {thing}"
        self.time_axis.tick_values = np.array([], dtype="datetime64[ms]")  # bqplot's own again

    def add(self, reading: telemetry.Reading) -> None:
        """Queue a reading (any thread); it appears at the next redraw."""
        with self._lock:
            self._points.append(reading)
            self._dirty = True

    def redraw(self) -> bool:
        """Copy queued readings into the figure, at most ten times a second; True if it drew."""
        now = self._clock()
        with self._lock:
            if not self._dirty or now - self._last_draw < 1 / MAX_REDRAWS_PER_SECOND:
                return False
            points = list(self._points)
            self._dirty = False
            self._last_draw = now
        times = np.array([int(p.time * 1000) for p in points], dtype="datetime64[ms]")
        with self.figure.hold_sync():
            for name, line in (("temperature", self.temperature), ("humidity", self.humidity)):
                values = np.array([getattr(p, name) for p in points])
                line.x, line.y = times, values
                if len(values):
                    low, high = _at_least(float(values.min()), float(values.max()), MIN_SPAN[name])
                    self.scales[name].min, self.scales[name].max = low, high
            if points:
                # bqplot's own ticks crowd into one run of digits at some widths and spans.
                ticks, format = time_ticks(min(p.time for p in points), max(p.time for p in points))
                self.time_axis.tick_format = format
                self.time_axis.tick_values = np.array(
                    [int(t * 1000) for t in ticks], dtype="datetime64[ms]"
                )
        self.redraws += 1
        return True

    @property
    def points(self) -> int:
        """How many readings the figure shows."""
        return len(self.temperature.y)

    def snapshot_png(self) -> bytes:
        """The readings as a static PNG (matplotlib), for headless runs and HTML exports."""
        from matplotlib import pyplot as plt

        fig = self.snapshot_figure()
        out = io.BytesIO()
        fig.savefig(out, format="png", bbox_inches="tight")
        plt.close(fig)
        return out.getvalue()

    def snapshot_figure(self) -> Any:
        """The readings as a matplotlib Figure (the caller closes it)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import dates as mdates
        from matplotlib import pyplot as plt

        with self._lock:
            points = list(self._points)
        fig, left = plt.subplots(figsize=(9, 4), dpi=100)
        times = [datetime.fromtimestamp(p.time) for p in points]
        left.plot(times, [p.temperature for p in points], color=BLUE, linewidth=2.5)  # type: ignore[arg-type]  # matplotlib plots datetimes; its stubs take numbers
        left.set_ylabel("temperature (°F)", color=BLUE, fontsize=13)
        right = left.twinx()
        right.plot(times, [p.humidity for p in points], color=ORANGE, linewidth=2.5, linestyle="--")  # type: ignore[arg-type]  # matplotlib plots datetimes; its stubs take numbers
        right.set_ylabel("humidity (%)", color=ORANGE, fontsize=13)
        left.set_xlabel("time", fontsize=13)
        of = f" of {self.thing}" if self.thing else ""
        left.set_title(f"Temperature and humidity{of} ({len(points)} readings)", fontsize=15)
        # The live plot's ticks (matplotlib's own choice for a few minutes of data reads
        # "09:08.000000").
        if points:
            ticks, format = time_ticks(min(p.time for p in points), max(p.time for p in points))
            left.set_xticks([datetime.fromtimestamp(t) for t in ticks])  # type: ignore[arg-type]  # matplotlib takes datetimes; its stubs take numbers
            left.xaxis.set_major_formatter(mdates.DateFormatter(format))  # type: ignore[no-untyped-call]  # matplotlib.dates has no annotations
        fig.autofmt_xdate()
        return fig
