"""Benchmark: a room of 300 on one class server.

A class of N students on the local cloud, served over HTTPS (`kit class serve`). `kit class
provision --virtual` gives each a virtual board (all in one process) publishing once a second,
each reading saying when it was sent. N viewers, one per student, follow their own board's live
stream through the notebooks' API, in a few processes of their own (their CPU reported apart).
Halfway through, 30 more students log in and register at the same moment.

Prints publish → event at the viewer (p50/p99/max) outside and during the registration burst,
events lost (the recorder's count against what each viewer got), the registrations' times, and
the CPU and memory of the class server, the broker, the boards and the viewers; the class
server's memory every 5 s shows whether it stays flat after warm-up.

    .venv/bin/python bench/class_load.py [--students 300] [--seconds 60] [--viewer-processes 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from classroom import ServedClass, cpu_seconds, memory, percentile, served_class
from cryptography.hazmat.primitives.asymmetric import ec

from kit.places import using_home
from kit.sim import fleet
from kit.sim.eccx08_csr import chip_csr, chip_pem

BURST = 30
KIT = [sys.executable, "-m", "kit.cli"]
PROVISION = ["--interval", "1", "--broker-host", "localhost"]  # a reading a second, boards here
WARM_UP = 20.0


def view(site: str, pairs: list[tuple[str, str]], stop_file: str, out: str) -> None:
    """One viewer process: follow each (token, thing) stream until `stop_file` appears; write
    what came."""

    problems: list[str] = []

    async def follow(client: httpx.AsyncClient, token: str, thing: str, got: list) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with client.stream(
                "GET", f"/api/things/{thing}/events", headers=headers, timeout=None
            ) as response:
                if response.status_code != 200:
                    problems.append(f"HTTP {response.status_code}")
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        if event.get("kind") == "reading" and "sent" in event:
                            got.append((thing, event["sent"], time.time()))
        except httpx.HTTPError as error:
            problems.append(type(error).__name__)
        except asyncio.CancelledError:
            pass

    async def main() -> list:
        got: list = []
        limits = httpx.Limits(max_connections=len(pairs) + 5)
        async with httpx.AsyncClient(base_url=site, verify=False, limits=limits) as client:
            tasks = [asyncio.create_task(follow(client, t, th, got)) for t, th in pairs]
            while not Path(stop_file).exists():
                await asyncio.sleep(0.5)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return got

    got = asyncio.run(main())
    Path(out).write_text(json.dumps({"got": got, "problems": problems}))


def tokens(site: str, logins: list[tuple[str, str]]) -> list[str]:
    """A notebook token for each student (argon2: a few at a time, as the server allows)."""
    found: list[str] = [""] * len(logins)

    def one(index: int) -> None:
        username, password = logins[index]
        for _ in range(20):
            answer = httpx.post(
                f"{site}/api/token",
                json={"username": username, "password": password},
                verify=False,
                timeout=60,
            )
            if answer.status_code == 200:
                found[index] = answer.json()["token"]
                return
            time.sleep(1)  # 503: many logging in at once

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(logins))]
    for batch in range(0, len(threads), 16):
        for thread in threads[batch : batch + 16]:
            thread.start()
        for thread in threads[batch : batch + 16]:
            thread.join()
    return found


def burst(site: str, logins: list[tuple[str, str]], times: list[float], ok: list[bool]) -> None:
    """BURST students log in, then all register a chip-made CSR at the same moment."""
    gate = threading.Barrier(len(logins))

    def student(index: int) -> None:
        username, password = logins[index]
        with httpx.Client(base_url=site, verify=False, timeout=120) as client:
            token = re.search(r'name="login_csrf" value="([^"]+)"', client.get("/login").text)
            client.post(
                "/login",
                data={"username": username, "password": password, "login_csrf": token.group(1)},
            )
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/register").text)
            csr = chip_pem(
                chip_csr(ec.generate_private_key(ec.SECP256R1()), {"CN": f"burst_{index}"})
            )
            gate.wait()
            begun = time.monotonic()
            done = client.post("/register", data={"csrf": csrf.group(1), "csr": csr, "slot": "0"})
            times.append(time.monotonic() - begun)
            ok.append(done.status_code == 200)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(len(logins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--viewer-processes", type=int, default=4)
    args = parser.parse_args()
    n = args.students
    with served_class(n + BURST) as served:
        work = Path(tempfile.mkdtemp(prefix="kit-class-load-"))  # this run's own files
        roster = work / "provision.csv"
        roster.write_text("name\n" + "".join(f"Student {i}\n" for i in range(n)))
        began = time.monotonic()
        subprocess.run(
            [*KIT, "class", "provision", str(roster), "--virtual", *PROVISION],
            env=served.env,
            check=True,
            capture_output=True,
        )
        provisioned = time.monotonic() - began
        boards = Path(served.env["KIT_HOME"]) / "class" / "fleet"
        with using_home(Path(served.env["KIT_HOME"])):
            fleet.start(boards, 1.0, timestamp=True)
        fleet_pid = fleet.running(boards)
        things = {name: f"{re.sub(r'[^a-z0-9]', '_', name)}_board" for name, _ in served.logins[:n]}
        issued = tokens(served.site, served.logins[:n])
        pairs = [(issued[i], things[served.logins[i][0]]) for i in range(n)]
        try:
            results = measure(served, pairs, args, fleet_pid, work)
        finally:
            fleet.stop(boards)  # started here again with timestamps: stopped here too
        results["provisioned"] = provisioned
    report(results, args)


def measure(
    served: ServedClass, pairs: list, args: argparse.Namespace, fleet_pid: int | None, work: Path
) -> dict:
    """Run the viewers, the burst in the middle, and the sampling; gather the numbers."""
    home = Path(served.env["KIT_HOME"])
    stop_file = str(work / "viewers.stop")
    shares = [pairs[i :: args.viewer_processes] for i in range(args.viewer_processes)]
    outs = [str(work / f"viewer-{i}.json") for i in range(args.viewer_processes)]
    context = multiprocessing.get_context("spawn")
    viewers = [
        context.Process(target=view, args=(served.site, share, stop_file, out))
        for share, out in zip(shares, outs, strict=True)
    ]
    for viewer in viewers:
        viewer.start()
    pids = {"class server": served.server_pid, "broker": served.broker_pid}
    if fleet_pid:
        pids["virtual boards (one process)"] = fleet_pid
    time.sleep(WARM_UP)
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    viewer_cpu_before = sum(cpu_seconds(v.pid) for v in viewers)
    start, samples = time.time(), []
    burst_times: list[float] = []
    burst_ok: list[bool] = []
    burst_window = (0.0, 0.0)
    for second in range(args.seconds):
        if second == args.seconds // 2:
            b0 = time.time()
            burst(served.site, served.logins[-BURST:], burst_times, burst_ok)
            burst_window = (b0, time.time() + 2)
        if second % 5 == 0:
            samples.append(memory(served.server_pid)[0])
        time.sleep(1)
    end = time.time()
    elapsed = end - start
    cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / elapsed for name, pid in pids.items()}
    viewer_cpu = (sum(cpu_seconds(v.pid) for v in viewers) - viewer_cpu_before) / elapsed
    memories = {name: memory(pid) for name, pid in pids.items()}
    time.sleep(3)  # the last events of the window arrive
    Path(stop_file).touch()
    for viewer in viewers:
        viewer.join(timeout=60)
    written = [json.loads(Path(out).read_text()) for out in outs]
    got = [tuple(row) for part in written for row in part["got"]]
    problems = Counter(problem for part in written for problem in part["problems"])
    with using_home(home):
        from kit.cloud.local import LocalCloud

        cloud = LocalCloud()
        expected = 0
        seen = {(thing, sent) for thing, sent, _ in got}
        lost = 0
        for _, thing in pairs:
            for message in cloud.messages(
                thing, since=start + 3, until=end - 3, topic_suffix="/environment"
            ):
                sent = json.loads(message.payload).get("sent")
                expected += 1
                lost += (thing, sent) not in seen
    inside = [(r - s) for _, s, r in got if start <= s <= end]
    during = [
        lat
        for (_, s, r), lat in ((g, g[2] - g[1]) for g in got)
        if burst_window[0] <= s <= burst_window[1]
    ]
    outside = [
        r - s
        for _, s, r in got
        if start <= s <= end and not burst_window[0] <= s <= burst_window[1]
    ]
    return {
        "outside": outside,
        "during": during,
        "all": inside,
        "expected": expected,
        "lost": lost,
        "burst_times": burst_times,
        "burst_ok": sum(burst_ok),
        "cpu": cpu,
        "viewer_cpu": viewer_cpu,
        "memories": memories,
        "samples": samples,
        "problems": problems,
        "tokens": sum(1 for token, _ in pairs if token),
    }


def report(results: dict, args: argparse.Namespace) -> None:
    n = args.students
    print(
        f"{n} virtual boards at 1 message/s, {n} viewers in {args.viewer_processes} processes, "
        f"{args.seconds} s after {WARM_UP:.0f} s warm-up, HTTPS, local cloud "
        f"({os.cpu_count()} cores)"
    )
    print(f"provisioning {n} virtual students: {results['provisioned']:.0f} s")
    print(f"{'publish -> event at the viewer':<36}{'p50':>8}{'p99':>8}{'max':>8}{'events':>9}")
    for label, key in (
        ("outside the registration burst", "outside"),
        ("during the burst", "during"),
    ):
        values = results[key]
        if values:
            print(
                f"{label:<36}{statistics.median(values) * 1000:>6.0f}ms"
                f"{percentile(values, 0.99) * 1000:>6.0f}ms"
                f"{max(values) * 1000:>6.0f}ms{len(values):>9}"
            )
    print(f"events lost: {results['lost']} of {results['expected']} the broker recorded")
    print(f"viewers with a token: {results['tokens']} of {n}")
    for problem, count in results["problems"].most_common():
        print(f"  streams that failed: {count} x {problem}")
    times = results["burst_times"]
    if times:
        print(
            f"{BURST} registering at once: {results['burst_ok']} succeeded, p50 "
            f"{statistics.median(times):.2f} s, p99 {percentile(times, 0.99):.2f} s"
        )
    for name, share in results["cpu"].items():
        resident, peak = results["memories"][name]
        print(
            f"{name}: CPU {share * 100:.0f}% of one core, "
            f"memory {resident:.0f} MB (peak {peak:.0f} MB)"
        )
    print(
        f"viewers ({args.viewer_processes} processes): "
        f"CPU {results['viewer_cpu'] * 100:.0f}% of one core"
    )
    print("class server memory every 5 s (MB): " + " ".join(f"{m:.0f}" for m in results["samples"]))


if __name__ == "__main__":
    main()
