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
import statistics
import threading
import time

import httpx
from classroom import memory, percentile, served_class
from cryptography.hazmat.primitives.asymmetric import ec

from kit.sim.eccx08_csr import chip_csr, chip_pem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=30)
    students = parser.parse_args().students
    with served_class(students) as served:
        site, logins = served.site, served.logins
        idle = memory(served.server_pid)
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
        after = memory(served.server_pid)

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
