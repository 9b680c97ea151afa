"""Benchmark: thirty students logging in and registering at the same moment on the class site.

Creates a class (`kit class init`, a roster of N), serves it over HTTPS on the local cloud
(`kit class serve`), then N clients each log in (all at once), wait at a barrier, and post a
chip-made CSR to Register Thing at the same moment. Prints a table: successes, p50/p99/max of
the login and of the registration as each client saw it, and the server's memory (resident now
and peak, from /proc).

    .venv/bin/python bench/class_register.py [--students 30]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from kit.sim.eccx08_csr import chip_csr, chip_pem


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def kit(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def memory(pid: int) -> tuple[float, float]:
    """Resident and peak resident memory of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    now = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return now / 1024, peak / 1024


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=30)
    students = parser.parse_args().students
    home = Path(tempfile.mkdtemp(prefix="kit-class-bench-"))
    env = {
        **os.environ,
        "KIT_HOME": str(home),
        "KIT_BROKER_PORT": free_port(),
        "KIT_BROKER_WS_PORT": free_port(),
    }
    kit(env, "class", "init", "--host", "localhost")
    roster = home / "roster.csv"
    roster.write_text("name\n" + "".join(f"Student {i}\n" for i in range(students)))
    handout = Path(
        re.search(r"handout: (\S+)", kit(env, "class", "roster", "add", str(roster))).group(1)
    )
    logins = re.findall(
        r"Username <code>([^<]+)</code><br>Password <code>([^<]+)</code>", handout.read_text()
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kit.cli",
            "class",
            "serve",
            "--port",
            port,
            "--broker-host",
            "localhost",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    site = f"https://127.0.0.1:{port}"
    try:
        while True:
            try:
                ssl.get_server_certificate(("127.0.0.1", int(port)), timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        idle = memory(server.pid)
        csrs = [
            chip_pem(chip_csr(ec.generate_private_key(ec.SECP256R1()), {"CN": f"bench_{i}"}))
            for i in range(students)
        ]
        start_login, start_register = threading.Barrier(students), threading.Barrier(students)
        login_times: list[float] = []
        register_times: list[float] = []
        ok: list[bool] = []
        failures: list[str] = []

        def student(index: int) -> None:
            try:
                one_student(index)
            except Exception as error:  # a broken run is reported, not hidden in a thread
                failures.append(f"{type(error).__name__}: {error}"[:160])
                start_login.abort()
                start_register.abort()

        def one_student(index: int) -> None:
            username, password = logins[index]
            with httpx.Client(base_url=site, verify=False, timeout=120) as client:
                token = re.search(
                    r'name="login_csrf" value="([^"]+)"', client.get("/login").text
                ).group(1)
                start_login.wait()
                begun = time.monotonic()
                client.post(
                    "/login", data={"username": username, "password": password, "login_csrf": token}
                )
                login_times.append(time.monotonic() - begun)
                csrf = re.search(
                    r'name="csrf" value="([^"]+)"', client.get("/register").text
                ).group(1)
                start_register.wait()
                begun = time.monotonic()
                done = client.post(
                    "/register", data={"csrf": csrf, "csr": csrs[index], "slot": "0"}
                )
                register_times.append(time.monotonic() - begun)
                succeeded = done.status_code == 200 and f"<b>bench_{index}</b>" in done.text
                ok.append(succeeded)
                if not succeeded:
                    problem = re.search(r'class="problem"[^>]*>([^<]*)', done.text)
                    failures.append(f"{done.status_code} {problem.group(1) if problem else ''}")

        threads = [threading.Thread(target=student, args=(i,)) for i in range(students)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = memory(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
        subprocess.run([sys.executable, "-m", "kit.cli", "stop"], env=env, capture_output=True)

    cores = os.cpu_count()
    print(f"{students} students at once, class site over HTTPS on the local cloud ({cores} cores)")
    print(f"{'':<28}{'p50':>9}{'p99':>9}{'max':>9}")
    for label, values in (
        ("login (argon2, 4 at once)", login_times),
        ("Register Thing", register_times),
    ):
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{label:<28}{p50:>8.2f}s{p99:>8.2f}s{max(values):>8.2f}s")
    print(f"registrations that succeeded: {sum(ok)} of {students}")
    for failure in sorted(set(failures)):
        print(f"  failed: {failure}")
    print(f"server memory: {idle[0]:.0f} MB idle, {after[0]:.0f} MB after, peak {after[1]:.0f} MB")


if __name__ == "__main__":
    main()
