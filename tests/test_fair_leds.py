"""Fair LEDs (issue 26, attack 5): one student's LED commands never delay another's.

The class has one observer connection for every LED command. A student who sends 1,900
commands to their own board (allowed: it is theirs) once held every other student's command
for 25-31 s, and "every LED off" waited in the same queue: over 100 publishes a second the
broker drops them without a PUBACK, and each lost one held one of paho's in-flight slots.
Now each device keeps only its latest command while one is unacknowledged, devices take
turns, the connection stays under 100 a second, and every LED off goes first.

A real class site (uvicorn in a thread), its feed on a real local cloud over TLS, boards as
paho clients with their own certificates (tests/class_site.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from class_site import PASSWORDS, Site, cloud, csrf_of, listening, own_device, site
from helpers import wait_until
from mqtt_peers import Peer

from kit.cloud.local import LocalCloud
from kit.led_commands import LED_RATE, LedCommands

__all__ = ["cloud", "site"]  # fixtures

FLOOD = 1900  # the issue's count
BOUND = 1.5  # seconds another student's command may take, flood or not (was 25-31 s)


def clocked(peer: Peer) -> list[tuple[float, bytes]]:
    """(when, payload) of each LED command the board receives, stamped on arrival."""
    arrivals: list[tuple[float, bytes]] = []
    keep = peer.client.on_message

    def on_message(client, userdata, message) -> None:  # paho's signature
        arrivals.append((time.monotonic(), bytes(message.payload)))
        keep(client, userdata, message)

    peer.client.on_message = on_message
    return arrivals


def arrival(arrivals: list[tuple[float, bytes]], payload: bytes, after: float) -> float:
    """When `payload` first arrived after `after` (waits up to 10 s)."""

    def found() -> float | None:
        return next((t for t, p in list(arrivals) if p == payload and t >= after), None)

    deadline = time.monotonic() + 10
    while found() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    when = found()
    assert when is not None, f"{payload!r} never arrived in 10 s"
    return when


def in_threads(count: int, send: Callable[[int], None], threads: int = 8) -> threading.Thread:
    """Call send(0..count-1) from `threads` threads at once, as fast as they go; the flood's
    own thread (joined when all are sent)."""

    def flood() -> None:
        def share(first: int) -> None:
            for n in range(first, count, threads):
                send(n)

        workers = [threading.Thread(target=share, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    flooding = threading.Thread(target=flood)
    flooding.start()
    return flooding


def token_for(site: Site, username: str) -> str:
    answer = httpx.post(
        f"{site.url}/api/token", json={"username": username, "password": PASSWORDS[username]}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def test_a_flood_of_commands_to_ones_own_board_delays_no_one_else(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    ada_board = listening(own_device(site, cloud, tmp_path, "fair_ada", "ada"), "fair_ada")
    bob_board = listening(own_device(site, cloud, tmp_path, "fair_bob", "bob"), "fair_bob")
    ada_got, bob_got = clocked(ada_board), clocked(bob_board)
    # As the API and the dashboard call it once they checked the board is the student's
    # (any rate limit at the web server comes before: this is the feed's own fairness).
    sent = [0]

    def ada(n: int) -> None:
        site.feed.led("fair_ada", 1 + n % 99)
        sent[0] += 1

    flooding = in_threads(FLOOD, ada)
    wait_until(lambda: sent[0] >= FLOOD // 3, what="the flood to be under way")
    asked = time.monotonic()
    site.feed.led("fair_bob", 42)
    bob_delay = arrival(bob_got, b"42", asked) - asked
    flooding.join()

    # The flood is over: every LED off (the instructor's button) reaches both boards at once.
    teacher = site.browser("teacher")
    token = csrf_of(teacher, "/class")
    asked = time.monotonic()
    assert teacher.post("/class/leds-off", data={"csrf": token}).status_code == 202
    off_delay = max(arrival(got, b"0", asked) for got in (ada_got, bob_got)) - asked
    time.sleep(0.3)  # nothing of the flood may come after it
    ada_last = ada_got[-1][1]
    print(
        f"\nflood of {FLOOD}: Bob's command took {bob_delay:.3f} s, every LED off "
        f"{off_delay:.3f} s; Ada's board got {len(ada_got)} commands, the last {ada_last!r}"
    )
    assert bob_delay < BOUND
    assert off_delay < BOUND
    assert ada_last == b"0"
    # The latest command of each device, not every one: the board is not flooded either.
    assert len(ada_got) < FLOOD
    ada_board.close()
    bob_board.close()


def test_through_the_api_another_students_command_and_every_led_off_stay_prompt(
    site: Site, cloud: LocalCloud, tmp_path: Path
) -> None:
    ada_board = listening(own_device(site, cloud, tmp_path, "fair_api_ada", "ada"), "fair_api_ada")
    bob_board = listening(own_device(site, cloud, tmp_path, "fair_api_bob", "bob"), "fair_api_bob")
    ada_got, bob_got = clocked(ada_board), clocked(bob_board)
    headers = {"Authorization": f"Bearer {token_for(site, 'ada')}"}
    answers: list[int] = []
    local = threading.local()

    def ada(n: int) -> None:
        if not hasattr(local, "client"):  # one keep-alive connection per thread, as a script
            local.client = httpx.Client(base_url=f"{site.url}/api", headers=headers, timeout=30)
        answer = local.client.post("/things/fair_api_ada/led", json={"value": 1 + n % 99})
        answers.append(answer.status_code)

    started = time.monotonic()
    flooding = in_threads(FLOOD, ada)
    wait_until(lambda: len(answers) >= FLOOD // 3, timeout=60, what="the flood to be under way")
    bob = httpx.Client(
        base_url=f"{site.url}/api",
        headers={"Authorization": f"Bearer {token_for(site, 'bob')}"},
        timeout=30,
    )
    # Several, spaced out as a person's clicks are: each must arrive (over 100/s the broker
    # drops a publish, so one lucky command would prove little).
    delays = []
    for value in range(41, 46):
        asked = time.monotonic()
        assert bob.post("/things/fair_api_bob/led", json={"value": value}).status_code == 202
        delays.append(arrival(bob_got, str(value).encode(), asked) - asked)
        time.sleep(0.1)
    bob_delay = max(delays)
    # Every LED off while Ada still floods: before anyone's next command, and not replaced
    # by hers (her next ones may turn it on again afterwards: it is her board).
    asked = time.monotonic()
    site.feed.leds_off(site.store.all_things())
    off_delay = max(arrival(got, b"0", asked) for got in (ada_got, bob_got)) - asked
    flooding.join()
    rate = len(answers) / (time.monotonic() - started)
    # And the instructor's button once the flood is over: the last word on every board.
    teacher = site.browser("teacher")
    token = csrf_of(teacher, "/class")
    asked = time.monotonic()
    assert teacher.post("/class/leds-off", data={"csrf": token}).status_code == 202
    button_delay = max(arrival(got, b"0", asked) for got in (ada_got, bob_got)) - asked
    time.sleep(0.3)
    print(
        f"\nAPI flood of {FLOOD} at {rate:.0f}/s ({answers.count(202)} accepted): Bob's "
        f"5 commands took at most {bob_delay:.3f} s, every LED off {off_delay:.3f} s during "
        f"the flood and {button_delay:.3f} s after it; Ada's board got {len(ada_got)} commands"
    )
    assert bob_delay < BOUND
    assert off_delay < BOUND
    assert button_delay < BOUND and ada_got[-1][1] == bob_got[-1][1] == b"0"
    ada_board.close()
    bob_board.close()


@pytest.mark.timeout(30)
def test_devices_take_turns_and_only_the_latest_waits() -> None:
    # The scheduling alone, on an injected transport: PUBACKs come when the test says.
    sent: list[tuple[str, int]] = []
    mids = iter(range(1, 10_000))
    out = threading.Condition()

    def publish(thing: str, value: int) -> int:
        with out:
            sent.append((thing, value))
            out.notify_all()
        return next(mids)

    def sent_count(count: int) -> list[tuple[str, int]]:
        with out:
            assert out.wait_for(lambda: len(sent) >= count, timeout=5), sent
            time.sleep(0.05)  # nothing more may follow
            return list(sent)

    leds = LedCommands(publish, rate=LED_RATE)
    leds.ask("a", 1)
    assert sent_count(1) == [("a", 1)]
    for value in range(2, 50):  # while a's first is unacknowledged: only its latest waits
        leds.ask("a", value)
    leds.ask("b", 7)  # b has nothing in flight: its turn is now
    assert sent_count(2) == [("a", 1), ("b", 7)]
    assert leds.waiting() == {"a": 49}
    leds.ask("b", 0, first=True)
    leds.acknowledged(2)  # b's 7
    assert sent_count(3)[-1] == ("b", 0)
    # Every LED off goes before a device's own next command, and that one cannot replace it.
    leds.ask("a", 0, first=True)
    leds.ask("a", 77)
    leds.acknowledged(1)  # a's 1
    assert sent_count(4)[-1] == ("a", 0)
    leds.acknowledged(4)  # a's 0
    assert sent_count(5)[-1] == ("a", 77)
    assert leds.waiting() == {} and leds.sent == 5
    leds.close()
