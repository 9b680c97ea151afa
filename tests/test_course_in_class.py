"""The course in class mode: notebooks 00 → 04 run with nbclient on a student's computer that
logged in to a class server (`kit use --cloud class`), with a virtual board. The registration
appears on the instructor's page, the live plot fills and the LED follows, all through the
class server; the student's token never reaches a notebook."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from class_server import log_in_from_a_terminal, new_class, serving

from kit import demo
from kit.cloud import class_cloud


@pytest.mark.timeout(600)
def test_notebooks_01_to_04_run_through_the_class_server(tmp_path: Path) -> None:
    running = new_class(tmp_path / "instructor", ["Ada Lovelace"], tmp_path / "roster.csv")
    username, password = running.cards["Ada Lovelace"]
    build = tmp_path / "build"
    lines: list[str] = []
    token: list[str] = []

    def log_in(env: dict[str, str]) -> None:
        done = log_in_from_a_terminal(
            running.site, username, running.fingerprint, password, env=env
        )
        assert done.returncode == 0, done.stderr
        token.append(class_cloud.ClassLink.load().token)
        env["KIT_CLOUD"] = "class"

    with serving(running, "--broker-host", "localhost"):
        code = demo.run(build, progress=lines.append, notebooks=demo.COURSE[:5], prepare=log_in)
        assert code == 0, "\n".join(lines) + "".join(
            p.read_text() for p in build.glob("*.error.txt")
        )
        # The instructor's page shows Ada's device, registered through the class.
        with httpx.Client(base_url=running.site, verify=False) as teacher:
            form = teacher.get("/login").text
            login = re.search(r'name="login_csrf" value="([^"]+)"', form).group(1)
            teacher.post(
                "/login",
                data={
                    "username": "instructor",
                    "password": running.instructor_password,
                    "login_csrf": login,
                },
            )
            page = teacher.get("/class").text
    assert "Ada Lovelace" in page and re.search(r"<code>[0-9A-F]{18}</code>", page)
    registered = (build / "notebooks" / "02_register_thing.ipynb").read_text()
    assert "in the class cloud" in registered
    assert "the class cloud issued a certificate" in registered  # the laptop-made CSR too
    # The plot filled and the LED followed, through the class server's stream and API.
    prototype = (build / "notebooks" / "04_run_prototype.ipynb").read_text()
    assert re.search(r"\d+ new readings from \w+ in the last", prototype)
    assert "answered: its LED is at 40 %" in prototype
    for name in demo.COURSE[:5]:
        saved = (build / "notebooks" / f"{name}.ipynb").read_text()
        assert token[0] not in saved and password not in saved, name
