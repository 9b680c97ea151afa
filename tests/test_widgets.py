"""Widgets tested without a browser: their models (traits), with an injected clock."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from helpers import registered_config
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kit import telemetry, widgets
from kit.cloud.local import LocalCloud
from kit.cloud.store import Message
from kit.sim import board as vboard
from kit.sim.aws_firmware import FirmwareSettings


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reading(i: int, thing: str = "d1") -> telemetry.Reading:
    return telemetry.Reading(thing, 1_796_000_000 + i, 70 + i / 10, 40 + i % 5)


def test_plot_shows_history_then_new_readings() -> None:
    clock = Clock()
    plot = widgets.LivePlot(clock=clock)
    for i in range(3):
        plot.add(reading(i))
    assert plot.redraw() and plot.points == 3
    assert list(plot.temperature.y) == [70.0, 70.1, 70.2]
    assert list(plot.humidity.y) == [40, 41, 42]
    assert plot.temperature.x[0] == np.datetime64(1_796_000_000_000, "ms")
    assert not plot.redraw()  # nothing new
    plot.add(reading(3))
    clock.now += 0.1
    assert plot.redraw() and plot.points == 4


def test_plot_redraws_at_most_ten_times_a_second_however_fast_messages_come() -> None:
    clock = Clock()
    plot = widgets.LivePlot(clock=clock)
    for i in range(2000):  # 2,000 messages in one second
        plot.add(reading(i))
        plot.redraw()
        clock.now += 0.0005
    assert 9 <= plot.redraws <= 11
    clock.now += 0.1  # the next tick shows the last one: within 1 s of its arrival
    assert plot.redraw() and plot.temperature.y[-1] == reading(1999).temperature


def test_plot_memory_is_bounded() -> None:
    plot = widgets.LivePlot(window=50, clock=Clock())
    for i in range(500):
        plot.add(reading(i))
    plot.redraw()
    assert plot.points == 50 and plot.temperature.y[0] == reading(450).temperature


def test_plot_is_readable_on_a_projector() -> None:
    plot = widgets.LivePlot()
    labels = [axis.label for axis in plot.figure.axes]
    assert labels == ["time", "temperature (°F)", "humidity (%)"]
    assert all(axis.tick_style["font-size"] == "16px" for axis in plot.figure.axes)
    assert (plot.temperature.colors, plot.humidity.colors) == ([widgets.BLUE], [widgets.ORANGE])
    assert plot.humidity.line_style == "dashed"  # told apart without colour too
    # No legend over the newest points: each value axis names its line, in the line's colour.
    assert not plot.temperature.display_legend and not plot.humidity.display_legend
    assert [axis.color for axis in plot.figure.axes[1:]] == [widgets.BLUE, widgets.ORANGE]


def test_static_snapshot_for_headless_runs() -> None:
    plot = widgets.LivePlot()
    for i in range(20):
        plot.add(reading(i))
    png = plot.snapshot_png()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    figure = plot.snapshot_figure()
    figure.canvas.draw()
    ticks = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert ticks and all(re.fullmatch(r"\d\d:\d\d:\d\d", tick) for tick in ticks), ticks


def test_led_control_shows_asked_and_reported() -> None:
    sent: list[int] = []
    clock = Clock(1000.0)
    control = widgets.LedControl(sent.append, clock)
    control.slider.value = 40
    assert sent == [40] and "asked: <b>40 %</b>" in control.state.value
    assert "waiting for the device to answer" in control.state.value
    clock.now = 1001.0
    control.device_reported(40, clock.now)
    assert "the device shows: <b>40 %</b>" in control.state.value
    assert "waiting" not in control.state.value
    control.on.click()
    control.off.click()
    control.off.click()
    assert sent == [40, 100, 0, 0] and control.slider.value == 0


def test_an_answer_from_before_the_command_is_not_the_answer() -> None:
    # The device said 60 % at 990 (history); 60 % asked at 1000 is still waiting, however
    # equal the numbers, until the device answers after the command.
    clock = Clock(1000.0)
    control = widgets.LedControl(lambda value: None, clock)
    control.device_reported(60, 990.0)
    assert "the device shows: <b>60 %</b>" in control.state.value
    control.ask(60)
    assert control.waiting and "waiting for the device to answer (it last said 60 %)" in (
        control.state.value
    )
    control.device_reported(60, 1002.0)
    assert not control.waiting and "the device shows: <b>60 %</b>" in control.state.value


def test_the_slider_starts_where_the_device_reports_its_led() -> None:
    # A device picked in the drop-down, its LED at 40 %: the slider shows 40, sending nothing;
    # once something is asked, the slider keeps the asked value.
    sent: list[int] = []
    control = widgets.LedControl(sent.append, Clock(1000.0))
    control.device_reported(40, 990.0)
    assert control.slider.value == 40 and sent == []
    control.ask(10)
    control.device_reported(40, 995.0)  # an older report arriving late
    assert control.slider.value == 10 and sent == [10] and control.waiting
    control.forget()  # another device
    control.device_reported(70, 1001.0)
    assert control.slider.value == 70 and sent == [10]


@pytest.fixture
def idle_watch():
    """A real Telemetry for the local cloud's observer, not connected (no broker running)."""
    return telemetry.Telemetry(LocalCloud().observer(), "d1")


def test_status_line_and_console(idle_watch) -> None:
    status = widgets.StatusLine(clock=Clock(1000.0))
    status.update(idle_watch)
    assert "no message yet" in status.widget.value
    assert "This notebook: <b>not connected</b> to the broker" in status.widget.value
    assert "0 received · 0 rejected" in status.widget.value


@pytest.mark.timeout(60)
def test_the_status_names_the_board_and_this_notebook_apart() -> None:
    # The cloud said the board left at 990; this notebook's own connection is another matter.
    status = widgets.StatusLine(clock=Clock(1000.0))
    with LocalCloud(port=0, ws_port=0) as cloud:
        watch = telemetry.Telemetry(cloud.observer(), "d1").start()
        try:
            status.update(watch, "d1", 1.0, (False, 990.0))
            board, notebook = status.widget.value.split("<br>")
            assert "Board d1: <b>not connected</b> since" in board
            assert "waiting for its first reading; it sends one every 1 s" in board
            assert "This notebook: connected to the broker" in notebook
            # A lifecycle event that arrives later wins over what the cloud said at the start.
            watch.arrived("$aws/events/presence/connected/d1", b"{}", 995.0)
            watch.arrived("things/d1/environment", b'{"temperature": 70, "humidity": 40}', 998.0)
            status.update(watch, "d1", 1.0, (False, 990.0))
            board = status.widget.value.split("<br>")[0]
            assert "Board d1: <b>connected</b> · last message 2 s ago" in board
            cloud.stop()  # the broker goes away: nothing is known of the board any more
            deadline = time.monotonic() + 20
            while watch.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            status.update(watch, "d1", 1.0, (True, 990.0))
            board, notebook = status.widget.value.split("<br>")
            assert "not known while this notebook is not connected" in board
            assert "This notebook: <b>not connected</b> to the broker (trying again)" in notebook
        finally:
            watch.stop()


def test_device_picker() -> None:
    picker = widgets.device_picker(["a", "b"], "b")
    assert picker.options == ("a", "b") and picker.value == "b"


@pytest.mark.timeout(90)
def test_dashboard_with_a_virtual_board() -> None:
    with LocalCloud(port=0, ws_port=0) as cloud:
        config = registered_config(cloud, "dash", "dash_1")
        with vboard.VirtualBoard(
            "dash", aws_config=config, firmware_settings=FirmwareSettings(interval=0.2)
        ) as device:
            watch = telemetry.Telemetry(cloud.observer(), "dash_1").start()
            dashboard = widgets.Dashboard(watch, "dash_1")
            deadline = time.monotonic() + 20
            while dashboard.plot.points < 3 and time.monotonic() < deadline:
                dashboard.refresh()
                time.sleep(0.1)
            assert dashboard.plot.points >= 3
            dashboard.led.slider.value = 65
            while dashboard.led.reported != 65 and time.monotonic() < deadline:
                dashboard.refresh()
                time.sleep(0.1)
            assert device.firmware.led == 65 and dashboard.led.reported == 65
            assert "connected" in dashboard.status.widget.value
            assert "things/dash_1/led/state" in dashboard.console.widget.value
            dashboard.stop()


def test_headless_show_leaves_a_static_image(monkeypatch, idle_watch) -> None:
    from kit.cloud.store import Message

    recorded = [
        Message(
            "d1",
            "things/d1/environment",
            json.dumps({"temperature": 70 + i, "humidity": 40}).encode(),
            1000.0 + i,
        )
        for i in range(5)
    ]
    idle_watch.backfill(recorded)
    shown: list = []
    monkeypatch.setenv("KIT_HEADLESS", "1")
    monkeypatch.setattr("IPython.display.display", lambda *objs, **kw: shown.extend(objs))
    dashboard = widgets.Dashboard(idle_watch, "d1")
    dashboard.show()
    dashboard.show_snapshot()
    # No widget where nothing draws it (an HTML export would show its raw repr): a sentence.
    assert "shows here in JupyterLab" in shown[0].data and dashboard.widget not in shown
    assert shown[1].data.startswith(b"\x89PNG") and dashboard.plot.points == 5
    monkeypatch.delenv("KIT_HEADLESS")
    dashboard.show()
    assert shown[2] is dashboard.widget  # in JupyterLab: the live dashboard


def test_moving_the_slider_never_waits_for_the_network() -> None:
    # The slider's callback runs on the kernel's event loop: with the broker out of reach, a
    # command is queued for paho's thread, not waited for (it used to block up to 5 s).
    watch = telemetry.Telemetry(LocalCloud(port=1).observer(), "dev_1")  # never connected
    control = widgets.LedControl(lambda value: watch.led("dev_1", value))
    started = time.monotonic()
    for value in (10, 20, 30):
        control.ask(value)
    assert time.monotonic() - started < 1.0
    assert control.asked == 30 and control.reported is None


def recorded_reading(thing: str, when: float, temperature: float) -> Message:

    body = json.dumps({"temperature": temperature, "humidity": 40}).encode()
    return Message(thing, f"things/{thing}/environment", body, when)


def test_the_drop_down_switches_device_with_its_history(idle_watch) -> None:
    asked: list[str] = []

    def history(thing: str) -> list[Message]:
        asked.append(thing)
        return [recorded_reading(thing, 1000.0 + i, 60.0 + i) for i in range(4)]

    idle_watch.backfill([recorded_reading("d1", 900.0, 70.0)])
    sent: list[tuple[str, int]] = []
    idle_watch.led = lambda thing, value: sent.append((thing, value))  # type: ignore[method-assign]
    dashboard = widgets.Dashboard(idle_watch, "d1", things=["d2", "d1"], history=history)
    assert dashboard.picker.options == ("d1", "d2") and dashboard.picker.layout.display is None
    assert "of d1" in dashboard.plot.figure.title
    dashboard.refresh()
    assert dashboard.plot.points == 1 and "waiting for its first reading" not in (
        dashboard.status.widget.value
    )
    dashboard.picker.value = "d2"
    assert asked == ["d2"] and dashboard.thing == "d2" and dashboard.plot.points == 4
    assert "of d2" in dashboard.plot.figure.title
    assert "last message" in dashboard.status.widget.value  # its history counts
    dashboard.led.ask(30)  # the LED command goes to the device shown
    assert sent == [("d2", 30)] and dashboard.led.slider.value == 30 and len(sent) == 1
    dashboard.picker.value = "d1"
    dashboard.picker.value = "d2"
    assert asked == ["d2"]  # a device's history is fetched once


def test_one_device_shows_no_drop_down(idle_watch) -> None:
    dashboard = widgets.Dashboard(idle_watch, "d1", interval=10)
    assert dashboard.picker.layout.display == "none"
    dashboard.refresh()
    assert "waiting for its first reading; it sends one every 10 s" in dashboard.status.widget.value


def test_the_lock_warning_and_the_field_labels_show_in_full() -> None:
    # ipywidgets cuts a description at ~80 px and a checkbox at 300 px unless told otherwise:
    # the one step that cannot be undone must be readable in full.
    from kit import course

    consent = course.lock_consent()
    assert "permanent" in consent.description and not consent.value
    assert consent.layout.width == "auto" and consent.style.description_width == "initial"
    assert consent.indent is False
    name = course.name_field()
    wifi = course.wifi_form()
    for field in (name.text, wifi.ssid, wifi.password):
        assert field.style.description_width == "initial", field.description


def test_noise_stays_small_on_the_plot() -> None:
    # 0.1 °F of sensor noise must not fill the axis: at least 2 °F and 5 % are shown.
    plot = widgets.LivePlot(clock=Clock(0.0))
    for i in range(5):
        plot.add(telemetry.Reading("d1", 1000.0 + i, 70.0 + (i % 2) / 10, 40 + i % 2))
    assert plot.redraw()
    temperature, humidity = plot.scales["temperature"], plot.scales["humidity"]
    assert temperature.max - temperature.min == pytest.approx(2.0)
    assert temperature.min < 70.0 and temperature.max > 70.1
    assert humidity.max - humidity.min == pytest.approx(5.0)


def test_the_forms_read_as_sentences_where_widgets_cannot_show() -> None:
    # An HTML export and a console show a widget's text form: a sentence, never a raw repr or
    # the password.
    from kit import course

    consent = course.lock_consent()
    assert repr(consent) == "[ ] I understand locking is permanent: lock the chip"
    name = course.name_field("has space")
    shown = name._repr_mimebundle_()["text/plain"]
    assert shown.startswith("Device name: has space.") and "VBox" not in shown
    wifi = course.wifi_form("Home")
    wifi.password.value = "secret-pass-123"
    shown = wifi._repr_mimebundle_()["text/plain"]
    assert shown == "WiFi name: Home; password: typed (hidden)." and "secret" not in shown


def test_commands_in_messages_show_as_code_not_backticks() -> None:
    # Messages quote commands in backticks for a terminal; a notebook shows them as code.
    from kit import course, doctor
    from kit.errors import CloudError

    shown = course.Notice("Stop it with `kit stop` <now>.")._repr_html_()
    assert "<code>kit stop</code>" in shown and "`" not in shown and "&lt;now&gt;" in shown
    title, message = CloudError("Run `kit cloud up` or course.start().")._render_traceback_()
    assert message == "Run \x1b[1mkit cloud up\x1b[22m or course.start()." and "Cloud" in title
    advice = doctor.Report((doctor.Check("Cloud", False, "off", "Run `kit cloud up`."),))
    assert "<code>kit cloud up</code>" in advice._repr_html_()


# About how wide a label of each time format is in the axis' 16 px type, and the room between
# the value axes on the narrowest plot the course supports (600 px, less 80 px each side).
LABEL_PX = {"%H:%M:%S": 80, "%H:%M": 50, "%a %H:%M": 90, "%d %b": 60}
ROOM_PX = 600 - 2 * 80


@settings(max_examples=300, deadline=None)
@example(low=1_796_169_600.0, span=5 * 604800.0)  # whole weeks, from a week's start
@example(low=1_796_000_000.0, span=12 * 86400.0)
@given(
    low=st.floats(min_value=1.6e9, max_value=2.0e9),
    span=st.one_of(st.floats(min_value=0, max_value=120), st.floats(min_value=0, max_value=4e6)),
)
def test_time_ticks_never_crowd_or_repeat(low: float, span: float) -> None:
    ticks, format = widgets.time_ticks(low, low + span)
    labels = [time.strftime(format, time.localtime(t)) for t in ticks]
    assert len(set(labels)) == len(labels), labels  # never the same label twice
    assert len(ticks) * (LABEL_PX[format] + 20) <= ROOM_PX, labels  # room between them
    assert all(low <= t <= low + span for t in ticks) or ticks == [low]
    if 10 <= span <= 86400:  # the spans a course shows: ten seconds to a day
        assert len(ticks) >= 2, labels  # something to read the time by
    if span >= 3 * 86400:
        assert len(ticks) >= 2, labels


def test_the_plot_sets_its_time_ticks_from_its_readings() -> None:
    plot = widgets.LivePlot(clock=Clock(1000.0))
    for i in range(0, 86400, 600):  # a day of readings
        plot.add(telemetry.Reading("d1", 1_796_000_000 + i, 70.0, 40.0))
    assert plot.redraw()
    assert plot.time_axis.tick_format == "%H:%M" and 2 <= len(plot.time_axis.tick_values) <= 6


def test_a_state_from_the_history_is_what_the_device_said_then() -> None:
    # A board restarts with its LED off and says nothing until asked: the recorded 60 % is
    # what it said at 990, not what it shows now.
    control = widgets.LedControl(lambda value: None, Clock(1000.0))
    control.device_reported(60, 990.0, live=False)
    assert "the device last reported <b>60 %</b> at" in control.state.value
    assert "the device shows" not in control.state.value
    control.ask(30)
    control.device_reported(30, 1001.0)
    assert "the device shows: <b>30 %</b>" in control.state.value


def test_history_that_arrives_after_a_live_reading_goes_before_it(idle_watch) -> None:
    body = b'{"temperature": 70, "humidity": 40}'
    idle_watch.arrived("things/d1/environment", body, 2000.0)  # live, before the history came
    idle_watch.backfill([recorded_reading("d1", 1000.0 + i, 60.0) for i in range(3)])
    assert [r.time for r in idle_watch.readings("d1")] == [1000.0, 1001.0, 1002.0, 2000.0]
    assert [r.time for r in idle_watch.readings("d1", since=1500.0)] == [2000.0]


def test_nothing_covers_the_plots_title() -> None:
    # bqplot's toolbar sits at the top right, over the end of the title (the device's name).
    assert widgets.LivePlot().figure.display_toolbar is False
