"""The class's live feed and dashboard streams: one observer, handed out by owner, over
Server-Sent Events from a real uvicorn server (HTTP on 127.0.0.1) and a real local cloud;
devices are paho clients with their own certificates."""

from __future__ import annotations

import time
from pathlib import Path

from class_site import (
    RecordingCloud,
    Site,
    Stream,
    cloud,
    csrf_of,
    listening,
    own_device,
    publish,
    site,
)
from helpers import wait_until
from mqtt_peers import connect, make_device

from kit.classroom.live import ClassFeed
from kit.cloud.local import LocalCloud

__all__ = ["cloud", "site"]  # fixtures


def test_a_student_follows_only_her_device_and_the_instructor_follows_every_one(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    ada_board = own_device(site, cloud, tmp_path, "live_ada", "ada")
    bob_board = own_device(site, cloud, tmp_path, "live_bob", "bob")
    ada, bob, teacher = site.browser("ada"), site.browser("bob"), site.browser("teacher")
    start = site.feed.last_id
    mine = Stream(ada, f"/live/live_ada/events?after={start}")
    everyone = Stream(teacher, f"/live/*/events?after={start}")
    assert mine.status == everyone.status == 200
    # Bob reaches nothing of Ada's: not her stream, not her story, not her LED.
    assert Stream(bob, f"/live/live_ada/events?after={start}").status == 404
    assert Stream(bob, f"/live/*/events?after={start}").status == 404
    assert bob.get("/live/live_ada/story").status_code == 404
    token = csrf_of(bob)
    assert bob.post("/live/live_ada/led", data={"csrf": token, "value": "0"}).status_code == 404

    publish(ada_board, "live_ada", 70.5)
    publish(bob_board, "live_bob", 60.0)
    readings = mine.wait_for(1, "reading")
    assert readings[0]["thing"] == "live_ada" and readings[0]["temperature"] == 70.5
    both = everyone.wait_for(2, "reading")
    assert {e["thing"] for e in both} == {"live_ada", "live_bob"}
    time.sleep(0.5)  # Bob's reading had all the time it needed to (wrongly) reach Ada
    assert {e["thing"] for e in mine.events} == {"live_ada"}
    ids = [e["id"] for e in everyone.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    mine.close()
    everyone.close()
    ada_board.close()
    bob_board.close()


def test_a_dropped_stream_catches_up_with_nothing_missing(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = own_device(site, cloud, tmp_path, "live_drop", "ada")
    ada = site.browser("ada")
    story = ada.get("/live/live_drop/story").json()
    stream = Stream(ada, f"/live/live_drop/events?after={story['last_id']}")
    for number in range(3):
        publish(board, "live_drop", 60.0 + number)
    first = stream.wait_for(3, "reading")
    last_seen = str(stream.events[-1]["id"])
    stream.close()  # the classroom WiFi drops
    for number in range(3, 8):
        publish(board, "live_drop", 60.0 + number)
    wait_until(lambda: len(site.feed.kept_since("live_drop", int(last_seen)) or []) >= 5)
    # The browser reconnects by itself, saying the last id it saw.
    again = Stream(ada, "/live/live_drop/events", last_event_id=last_seen)
    caught_up = again.wait_for(5, "reading")
    temperatures = [e["temperature"] for e in first + caught_up]
    assert temperatures == [60.0 + n for n in range(8)]
    again.close()
    board.close()


def test_a_gap_too_old_to_fill_tells_the_page_to_load_the_story_again(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    site.feed.keep = 2  # devices seen from now on keep two events each
    board = own_device(site, cloud, tmp_path, "live_gap", "ada")
    for number in range(5):
        publish(board, "live_gap", 50.0 + number)
        time.sleep(0.05)  # the recorder's and the observer's clocks tell them apart
    began = site.feed.first_id
    wait_until(lambda: site.feed.kept_since("live_gap", began) is None, what="events let go")
    ada = site.browser("ada")
    stream = Stream(ada, "/live/live_gap/events", last_event_id=str(began))
    wait_until(stream.closed.is_set, what="the stream to end")
    assert stream.events[-1]["event"]["event"] == "reload"
    # The story then has them all: recorded before what the feed kept, then kept.
    story = ada.get("/live/live_gap/story").json()
    shown = [e["temperature"] for e in story["recorded"] + story["kept"] if "temperature" in e]
    assert shown == [50.0 + n for n in range(5)], story
    board.close()


def test_the_led_goes_through_the_owner_check_and_reaches_the_board(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = listening(own_device(site, cloud, tmp_path, "live_led", "ada"), "live_led")
    ada = site.browser("ada")
    token = csrf_of(ada)
    assert ada.post("/live/live_led/led", data={"csrf": "forged", "value": "40"}).status_code == 403
    for bad in ("101", "-1", "<b>", ""):
        refused = ada.post("/live/live_led/led", data={"csrf": token, "value": bad})
        assert refused.status_code == 400 and "0 to 100" in refused.text
    sent = ada.post("/live/live_led/led", data={"csrf": token, "value": "40"})
    assert sent.status_code == 202
    assert board.wait_for(1) == [("things/live_led/led", b"40")]
    board.close()


def test_presence_comes_from_the_class_observer_where_the_cloud_keeps_none(
    site: Site, cloud: RecordingCloud, tmp_path: Path
) -> None:
    # On AWS the cloud keeps no presence for us: the class server's observer records it, and
    # My devices and the class page read it from there.
    board = own_device(site, cloud, tmp_path, "live_here", "ada")
    wait_until(lambda: cloud.presence("live_here").connected, what="recorded presence")
    ada = site.browser("ada")
    assert "connected now" in ada.get("/devices").text
    board.close()
    wait_until(lambda: cloud.presence("live_here").connected is False, what="the departure")
    assert "connected now" not in ada.get("/devices").text


def test_the_instructor_sees_the_class_only_and_switches_every_led_off(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    in_class = listening(own_device(site, cloud, tmp_path, "live_room", "bob"), "live_room")
    # A thing of the same cloud that the class does not hold (the teacher's own demo board).
    files = make_device(tmp_path, "live_other", cloud)
    outside = connect(
        "localhost", cloud.broker_port, "live_other", files.cert_file, files.key_file, files.ca_file
    )
    teacher, bob = site.browser("teacher"), site.browser("bob")
    story = teacher.get("/class/live/story").json()
    assert [d["thing"] for d in story["devices"]] == ["live_room"]
    assert story["devices"][0]["owner"] == "Bob" and story["devices"][0]["connected"]
    everyone = Stream(teacher, f"/live/*/events?after={story['last_id']}")
    publish(outside, "live_other", 10.0)
    publish(in_class, "live_room", 20.0)
    assert [e["thing"] for e in everyone.wait_for(1, "reading")] == ["live_room"]
    time.sleep(0.3)
    assert {e["thing"] for e in everyone.events} == {"live_room"}
    everyone.close()

    assert bob.get("/class/live/story").status_code == 403
    assert bob.get("/class/live").status_code == 403
    bob_token = csrf_of(bob)
    assert bob.post("/class/leds-off", data={"csrf": bob_token}).status_code == 403
    token = csrf_of(teacher, "/class")
    assert teacher.post("/class/leds-off", data={"csrf": token}).status_code == 202
    assert in_class.wait_for(1) == [("things/live_room/led", b"0")]
    in_class.close()
    outside.close()
    cloud.unregister("live_other")


def test_the_led_form_works_without_javascript(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = listening(own_device(site, cloud, tmp_path, "live_plain", "ada"), "live_plain")
    ada = site.browser("ada")
    token = csrf_of(ada, "/dashboard?thing=live_plain")
    html = {"Accept": "text/html"}
    off = ada.post(
        "/live/live_plain/led",
        data={"csrf": token, "switch": "0", "value": "70"},
        headers=html,
    )
    assert off.status_code == 303 and off.headers["location"] == "/dashboard?thing=live_plain"
    # Each answered before the next: a command sent while the last is unacknowledged takes
    # its place (only the latest of a device waits), which is not what this test is about.
    assert [payload for _, payload in board.wait_for(1)] == [b"0"]
    ada.post(
        "/live/live_plain/led", data={"csrf": token, "switch": "100", "value": "0"}, headers=html
    )
    assert [payload for _, payload in board.wait_for(2)] == [b"0", b"100"]
    ada.post("/live/live_plain/led", data={"csrf": token, "value": "35"}, headers=html)
    assert [payload for _, payload in board.wait_for(3)] == [b"0", b"100", b"35"]
    board.close()


def test_after_a_server_restart_a_page_loads_its_story_again(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    # The numbers go on growing across restarts, and one from before the restart is known
    # as such: what happened while the server was down is only in the recorder.
    board = own_device(site, cloud, tmp_path, "live_restart", "ada")
    publish(board, "live_restart", 42.0)
    wait_until(lambda: site.feed.recent("live_restart", 5), what="the reading")
    before = site.feed.last_id
    site.stop()
    restarted = ClassFeed(cloud)
    assert restarted.first_id > before
    assert restarted.kept_since("live_restart", before) is None
    assert restarted.kept_since("live_restart", restarted.first_id) == []
    board.close()


def test_hostile_readings_never_stop_the_feed(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    # Each of these once ended the class's only observer (paho's thread died) or broke the
    # pages' JSON; now they are rejected messages on the console, and the feed goes on.
    board = own_device(site, cloud, tmp_path, "live_evil", "ada")
    ada, teacher = site.browser("ada"), site.browser("teacher")
    stream = Stream(ada, f"/live/live_evil/events?after={site.feed.last_id}")
    hostile = [
        b'{"temperature": 1' + b"0" * 400 + b', "humidity": 1}',
        b"[" * 100_000,
        b'{"temperature": NaN, "humidity": Infinity}',
        b'{"temperature": "<script>alert(1)</script>", "humidity": 1}',
    ]
    for payload in hostile:
        board.client.publish("things/live_evil/environment", payload, qos=1).wait_for_publish(5)
    publish(board, "live_evil", 71.0)
    assert stream.wait_for(1, "reading")[0]["temperature"] == 71.0
    rejected = stream.wait_for(len(hostile), "rejected")
    reasons = ["not a finite number", "not JSON", "not a finite number", "not a number"]
    assert [e["reason"] for e in rejected] == reasons
    assert site.feed.connected
    assert ada.get("/live/live_evil/story").status_code == 200
    assert teacher.get("/class/live/story").status_code == 200
    stream.close()
    board.close()


def test_a_device_that_changes_hands_ends_the_old_owners_stream(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    board = own_device(site, cloud, tmp_path, "live_passed", "ada")
    publish(board, "live_passed", 11.0)
    ada, bob = site.browser("ada"), site.browser("bob")
    wait_until(lambda: site.feed.recent("live_passed", 5), what="Ada's reading")
    stream = Stream(ada, f"/live/live_passed/events?after={site.feed.last_id}")
    board.close()
    ada.post("/devices/live_passed/remove", data={"csrf": csrf_of(ada)})
    time.sleep(0.05)  # the store's clock: Bob's claim comes after Ada's last reading
    bobs_board = own_device(site, cloud, tmp_path / "bob", "live_passed", "bob")
    publish(bobs_board, "live_passed", 22.0)
    wait_until(stream.closed.is_set, what="Ada's stream to end")
    assert all(e.get("temperature") != 22.0 for e in stream.events)
    assert Stream(ada, "/live/live_passed/events?after=0").status == 404
    # Bob's story starts when the device became his: nothing of Ada's time.
    story = bob.get("/live/live_passed/story").json()
    shown = [e.get("temperature") for e in story["recorded"] + story["kept"]]
    assert 11.0 not in shown
    bobs_board.close()


def test_one_person_cannot_open_streams_without_end(site: Site) -> None:
    from kit.classroom.streams import STREAMS_EACH

    teacher = site.browser("teacher")
    after = site.feed.last_id
    opened = [Stream(teacher, f"/live/*/events?after={after}") for _ in range(STREAMS_EACH)]
    assert {stream.status for stream in opened} == {200}
    refused = teacher.get(f"/live/*/events?after={after}")
    assert refused.status_code == 429 and "Too many live pages" in refused.text
    opened[0].close()

    def one_more() -> bool:
        stream = Stream(teacher, f"/live/*/events?after={after}")
        opened.append(stream)  # closed below, whatever it answered
        return stream.status == 200

    wait_until(one_more, what="a closed stream to free its place")
    for stream in opened[1:]:
        if not stream.closed.is_set():
            stream.close()


def test_numbers_in_any_characters_are_refused_not_a_crash(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    own_device(site, cloud, tmp_path, "live_nums", "ada").close()
    ada = site.browser("ada")
    token = csrf_of(ada)
    for value in ("²", "٣", "9" * 5000):
        refused = ada.post("/live/live_nums/led", data={"csrf": token, "value": value})
        assert refused.status_code == 400
    for last in ("²".encode("latin-1"), b"9" * 5000, b"-3"):  # bytes as a header carries them
        stream = Stream(ada, "/live/live_nums/events", last_event_id=last)
        assert stream.status == 200
        wait_until(stream.closed.is_set, what="the reload")
        assert stream.events[-1]["event"]["event"] == "reload"


def test_stopping_the_feed_ends_even_a_full_follower(cloud: LocalCloud) -> None:
    # A follower whose queue is full (a page far behind) gets its end signal all the same.
    import asyncio

    from kit.classroom.live import QUEUE_LIMIT
    from kit.telemetry import Reading

    feed = ClassFeed(cloud)

    async def scenario() -> list:
        feed._loop = asyncio.get_running_loop()  # as start() sets it, without a broker
        follower = feed.follow(("a", "b"), feed.first_id, keepalive=0.05)
        assert await anext(follower) is not None  # following now (a QUIET)
        for number in range(QUEUE_LIMIT):
            feed._arrived(Reading("a", float(number), 70.0, 40.0))
        await asyncio.sleep(0.1)  # the loop hands them over
        feed.stop()
        seen = []
        async for item in follower:
            seen.append(item)
        return seen

    seen = asyncio.run(scenario())
    assert seen and seen[-1].name == "ENDED"


def test_a_removed_device_leaves_the_feed_at_once(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    # What the feed kept of a device goes with it (the cloud's own check comes a minute later).
    board = own_device(site, cloud, tmp_path, "live_gone", "ada")
    publish(board, "live_gone", 12.0)
    wait_until(lambda: site.feed.recent("live_gone", 5), what="Ada's reading")
    board.close()
    ada = site.browser("ada")
    assert ada.post("/devices/live_gone/remove", data={"csrf": csrf_of(ada)}).status_code in (
        200,
        303,
    )
    assert site.feed.recent("live_gone", 5) == []


def test_the_pages_led_route_keeps_the_apis_rate(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    # Posting to the page's route directly must not get round the per-person limit.
    board = own_device(site, cloud, tmp_path, "live_fast", "ada")
    ada = site.browser("ada")
    token = csrf_of(ada)
    answers = [
        ada.post("/live/live_fast/led", data={"csrf": token, "value": str(n % 101)})
        for n in range(30)
    ]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and "Too many LED commands" in limited[0].text
    assert int(limited[0].headers["retry-after"]) >= 1
    assert sum(a.status_code == 202 for a in answers) <= 15
    board.close()
