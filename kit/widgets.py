"""Notebook widgets: the live plot, the LED control, a device picker, a status line, a console.

paho's network thread never touches a widget (ipywidgets are not thread-safe): telemetry
events land in bounded buffers, and a task on the kernel's event loop redraws a few times a
second inside `hold_sync`. Every timing rule takes an injected clock, so the logic is tested
without a browser by reading the widgets' traits.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections import deque
from collections.abc import Callable

import ipywidgets as widgets

from kit import environment, telemetry
from kit.cloud.store import Message, Presence
from kit.errors import KitError
from kit.live_plot import BIG, BLUE, MAX_REDRAWS_PER_SECOND, ORANGE, LivePlot, time_ticks
from kit.printable import printable

# The plot lives in kit.live_plot; the dashboard and its callers use it from here too.
__all__ = ["BIG", "BLUE", "ORANGE", "LivePlot", "time_ticks"]


class LedControl:
    """A brightness slider with on/off buttons, showing what was asked and what the device shows."""

    def __init__(self, send: Callable[[int], None], clock: Callable[[], float] = time.time) -> None:
        self._send = send
        self._clock = clock
        self.asked: int | None = None
        self.asked_at: float | None = None  # Unix time of the last command
        self.reported: int | None = None
        self.reported_at: float | None = None  # Unix time of the device's last answer
        self.reported_live = False  # the answer arrived while this dashboard watched
        self.slider = widgets.IntSlider(
            value=0,
            min=0,
            max=100,
            step=5,
            description="LED %",
            continuous_update=False,
            layout=widgets.Layout(width="420px"),
        )
        self.on = widgets.Button(description="On")
        self.off = widgets.Button(description="Off")
        self.state = widgets.HTML()
        self._quiet = False
        self.slider.observe(
            lambda change: None if self._quiet else self.ask(change["new"]), names="value"
        )
        self.on.on_click(lambda _: self._set_slider(100))
        self.off.on_click(lambda _: self._set_slider(0))
        self.widget = widgets.VBox([widgets.HBox([self.slider, self.on, self.off]), self.state])
        self._show()

    def _set_slider(self, value: int) -> None:
        if self.slider.value == value:
            self.ask(value)  # pressing On twice still sends
        self.slider.value = value

    def ask(self, value: int) -> None:
        """Send a brightness to the device; the slider shows it (also when asked from code)."""
        self.asked = telemetry.check_brightness(value)
        self.asked_at = self._clock()
        self._send(value)
        self._move_slider(value)
        self._show()

    def _move_slider(self, value: int) -> None:
        """Show `value` on the slider without sending it."""
        if self.slider.value != value:
            self._quiet = True
            try:
                self.slider.value = value
            finally:
                self._quiet = False

    def forget(self) -> None:
        """Another device is shown: nothing asked or reported yet."""
        self.asked = self.reported = self.asked_at = self.reported_at = None
        self._show()

    def device_reported(self, value: int, when: float, live: bool = True) -> None:
        """What the device says it applied (its led/state message, arrived at `when`); not
        `live`: from the history, so only what it said then (a board restarts with its LED off,
        and says nothing until it is asked)."""
        self.reported, self.reported_at, self.reported_live = value, when, live
        if self.asked is None:  # nothing asked here yet: the slider starts where the LED is
            self._move_slider(value)
        self._show()

    @property
    def waiting(self) -> bool:
        """Whether the last command has had no answer from the device yet."""
        if self.asked_at is None:
            return False
        return self.reported_at is None or self.reported_at < self.asked_at

    def _show(self) -> None:
        asked = "—" if self.asked is None else f"{self.asked} %"
        shown = "—" if self.reported is None else f"{self.reported} %"
        # An answer from before the command says what the LED was, not what it is now.
        if self.waiting:
            before = "" if self.reported is None else f" (it last said {shown})"
            device = f"waiting for the device to answer{before}"
        elif self.reported_at is not None and not self.reported_live:
            device = f"the device last reported <b>{shown}</b> at {_at(self.reported_at)}"
        else:
            device = f"the device shows: <b>{shown}</b>"
        # The buttons show what the device reported, never what was only asked.
        lit = self.reported is not None and self.reported > 0
        self.on.button_style = "success" if lit else ""
        self.off.button_style = "" if lit or self.reported is None else "info"
        self.state.value = f"<span style='font-size:16px'>asked: <b>{asked}</b> · {device}</span>"


def _at(when: float) -> str:
    """A Unix time as the clock on the wall shows it."""
    return time.strftime("%H:%M:%S", time.localtime(when))


class StatusLine:
    """Two lines, named apart: the board (connected, its last message) and this notebook's own
    connection (connected, messages received and rejected)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.widget = widgets.HTML()

    def update(
        self,
        watch: telemetry.Telemetry,
        thing: str | None = None,
        interval: float | None = None,
        board: tuple[bool | None, float | None] = (None, None),
    ) -> None:
        """`board` is what the cloud last said of the board: connected or not, and since when
        (the dashboard's lifecycle events take over once one arrives)."""
        connected, since = board
        if thing is not None:
            seen = watch.board_connected(thing)
            connected, since = seen if seen is not None else (connected, since)
        if not watch.connected.is_set():
            link = "not known while this notebook is not connected"
        elif connected is True:
            link = "<b>connected</b>"
        elif connected is False:
            link = "<b>not connected</b>" + (f" since {_at(since)}" if since else "")
        else:
            link = "connection not known yet"
        last = watch.last_message_of(thing) if thing else watch.last_message
        if last is None and thing:
            every = f"; it sends one every {interval:g} s" if interval else ""
            age = f"waiting for its first reading{every}"
        elif last is None:
            age = "no message yet"
        else:
            age = f"last message {max(0, self._clock() - last):.0f} s ago"
        name = f"Board {html.escape(printable(thing), quote=False)}" if thing else "Boards"
        through = "the class server" if watch.transport == "events" else "the broker"
        mine = (
            f"connected to {through}"
            if watch.connected.is_set()
            else f"<b>not connected</b> to {through} (trying again)"
        )
        self.widget.value = (
            "<div class='kit-live' style='font-size:16px'>"
            f"{name}: {link} · {age}<br>"
            f"This notebook: {mine} · {watch.received} received · {watch.rejected} rejected"
            "</div>"
        )


# Shown in place of the live lines once the kernel behind the widgets is gone: JupyterLab marks
# every widget of a dead or restarted kernel with the class jupyter-widgets-disconnected.
KERNEL_GONE = (
    "<style>.kit-gone{display:none}"
    ".jupyter-widgets-disconnected .kit-gone{display:block}"
    ".jupyter-widgets-disconnected .kit-live{display:none}</style>"
    "<div class='kit-gone' style='font-size:16px;border-left:4px solid #D55E00;"
    "padding:4px 10px'><b>The kernel restarted or stopped</b>: this dashboard no longer "
    "updates. Run the notebook from the top (Run ▸ Run All Cells).</div>"
)


class Console:
    """The raw messages, newest last, like the browser console the workshop points to."""

    def __init__(self, lines: int = 12) -> None:
        self.lines = lines
        self.widget = widgets.HTML()

    def update(self, raw: list[tuple[float, str, bytes]]) -> None:
        rows = []
        for when, topic, payload in raw[-self.lines :]:
            stamp = time.strftime("%H:%M:%S", time.localtime(when))
            # One row per message: line breaks fold to spaces (boards pretty-print their JSON),
            # and any other control character is shown as an escape, never obeyed.
            text = " ".join(payload.decode("utf-8", errors="replace").split())
            rows.append(f"{stamp}  {printable(topic)}  {printable(text)}")
        body = html.escape("\n".join(rows)) or "(no messages yet)"
        self.widget.value = (
            f"<pre style='font-size:13px;max-height:16em;overflow:auto'>{body}</pre>"
        )


def device_picker(things: list[str], current: str | None = None) -> widgets.Dropdown:
    """A drop-down of registered things."""
    return widgets.Dropdown(
        options=things,
        value=current if current in things else None,
        description="Device",
        style={"description_width": "initial"},
    )


class Dashboard:
    """Plot, LED control, status and console for one thing at a time, fed by a Telemetry
    connection; a drop-down picks the thing when there are several."""

    def __init__(
        self,
        watch: telemetry.Telemetry,
        thing: str,
        window: int = 600,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        things: list[str] | None = None,
        history: Callable[[str], list[Message]] | None = None,
        interval: float | None = None,
        presence: Callable[[str], Presence] | None = None,
    ) -> None:
        """`things` fills the drop-down (`thing` first); `history(thing)` gives a thing's
        recorded readings when it is picked; `interval` is how often the board publishes;
        `presence(thing)` is what the cloud knows of a board's connection."""
        self.watch, self.thing = watch, thing
        self.interval = interval
        self._history = history
        self._backfilled = {thing}  # the caller gave the first thing's history
        self.plot = LivePlot(window, clock)
        self.led = LedControl(lambda value: watch.led(self.thing, value), wall_clock)
        self.status = StatusLine(wall_clock)
        self._presence = presence
        self._board = self._presence_of(thing)
        self._was_connected = watch.connected.is_set()
        self.console = Console()
        choices = [thing] + [t for t in (things or []) if t != thing]
        self.picker = device_picker(choices, thing)
        self.picker.layout.display = None if len(choices) > 1 else "none"
        self.picker.observe(lambda change: self.select(change["new"]), names="value")
        self._pending_states: deque[telemetry.LedState] = deque(maxlen=100)
        self._task: asyncio.Task[None] | None = None
        self.plot.show_thing(thing)
        for reading in watch.readings(thing):
            self.plot.add(reading)
        state = watch.led_answer(thing)  # from the history: where the LED was last seen
        if state is not None:
            self.led.device_reported(state.value, state.time, live=False)
        watch.listen(self._on_event)  # called on paho's thread: it only fills buffers
        self.widget = widgets.VBox(
            [
                widgets.HTML(KERNEL_GONE),
                self.picker,
                self.plot.figure,
                self.led.widget,
                self.status.widget,
                self.console.widget,
            ]
        )

    def select(self, thing: str) -> None:
        """Show `thing` instead: its history, then its live readings."""
        if not thing or thing == self.thing:
            return
        self.thing = thing
        self._board = self._presence_of(thing)
        self.plot.show_thing(thing)
        self._pending_states.clear()
        if self._history is not None and thing not in self._backfilled:
            self._backfilled.add(thing)
            self.watch.backfill(self._history(thing))
        for reading in sorted(self.watch.readings(thing), key=lambda r: r.time):
            self.plot.add(reading)
        self.led.forget()
        state = self.watch.led_answer(thing)
        if state is not None:
            self.led.device_reported(state.value, state.time, live=False)
        self.refresh()

    def _presence_of(self, thing: str) -> tuple[bool | None, float | None]:
        """What the cloud says of `thing`'s connection now (unknown without `presence`)."""
        if self._presence is None:
            return None, None
        try:
            known = self._presence(thing)
        except KitError:  # the cloud cannot say now: unknown, and the dashboard carries on
            return None, None
        return known.connected, known.changed

    def _on_event(self, event: telemetry.Event) -> None:
        if event.thing != self.thing:
            return
        if isinstance(event, telemetry.Reading):
            self.plot.add(event)
        elif isinstance(event, telemetry.LedState):
            self._pending_states.append(event)

    def refresh(self) -> None:
        """Bring every widget up to date (on the kernel's thread)."""
        connected = self.watch.connected.is_set()
        if connected and not self._was_connected:
            # Back after a loss (the broker restarted): what the cloud says now, not before.
            self._board = self._presence_of(self.thing)
        self._was_connected = connected
        self.plot.redraw()
        while self._pending_states:
            state = self._pending_states.popleft()
            self.led.device_reported(state.value, state.time)
        self.status.update(self.watch, self.thing, self.interval, self._board)
        mine = f"things/{self.thing}/"
        self.console.update([row for row in self.watch.raw if row[1].startswith(mine)])

    def show(self) -> None:
        """Display the dashboard (its state says what it waits for). Where no front end draws
        widgets (KIT_HEADLESS=1) a sentence stands in for it: a saved notebook or its HTML
        export would otherwise show the widget's raw repr, and show_snapshot() adds the plot."""
        from IPython.display import HTML, display

        self.refresh()
        if environment.headless():
            note = "The live dashboard (plot, LED slider, console) shows here in JupyterLab."
            display(HTML(f"<p><i>{note}</i></p>"))  # type: ignore[no-untyped-call]  # IPython: unannotated
            return
        display(self.widget)  # type: ignore[no-untyped-call]  # IPython's display() is unannotated

    def show_snapshot(self) -> None:
        """Where no front end draws widgets (KIT_HEADLESS=1, which `kit demo` and the tests
        set), leave a static image of the readings, so executed notebooks and their HTML export
        show the data offline; elsewhere nothing."""
        from IPython.display import Image, display

        if environment.headless():
            display(Image(self.plot.snapshot_png()))  # type: ignore[no-untyped-call]  # IPython: unannotated

    def start(self) -> Dashboard:
        """Refresh ten times a second on the kernel's event loop until stop()."""

        async def run() -> None:
            while True:
                self.refresh()
                await asyncio.sleep(1 / MAX_REDRAWS_PER_SECOND)

        self._task = asyncio.get_event_loop().create_task(run())
        return self

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.watch.stop()
