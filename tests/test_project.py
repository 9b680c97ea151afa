"""The project's own promises: one environment for pip and conda, two commands, CI = make test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONDA_ONLY = {"python", "pip", "arduino-cli"}


def normalise(requirement: str) -> str:
    name, spec = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()
    return name.lower().replace("_", "-") + spec.replace(" ", "")


def test_environment_yml_lists_the_same_runtime_dependencies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = {normalise(r) for r in pyproject["project"]["dependencies"]}
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert environment["channels"] == ["conda-forge"]
    conda = {normalise(d) for d in environment["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert pip[-1] == "-e ."  # the kit itself, from this checkout
    listed = {d for d in conda if re.match(r"[a-z0-9-]+", d).group(0) not in CONDA_ONLY}
    listed |= {normalise(d) for d in pip[:-1]}  # packages conda-forge does not carry
    assert listed == wanted


def test_the_two_commands_are_documented_and_ci_runs_make_test() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert ci[-1] == "make test"


def test_every_top_level_folder_exists() -> None:
    for name in ("notebooks", "kit", "sketches", "images", "tests", "environment.yml"):
        assert (ROOT / name).exists(), name


def test_no_private_keys_or_configs_are_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert "sketches/AWS/config.h" not in tracked
    for name in tracked:
        path = ROOT / name
        if path.is_file() and path.suffix in {".pem", ".key", ".txt", ".h"}:
            assert "PRIVATE KEY" not in path.read_text(errors="replace"), name


@pytest.mark.timeout(120)
def test_kit_lab_serves_the_students_copies_of_the_notebooks(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (tmp_path / "lab.log").open("w+")
    ports = []
    for _ in range(2):
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            ports.append(str(free.getsockname()[1]))
    env = {
        "KIT_HOME": str(tmp_path / "home"),
        "KIT_BROKER_PORT": ports[0],
        "KIT_BROKER_WS_PORT": ports[1],
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "PATH": str(Path(sys.executable).parent),
    }
    lab = subprocess.Popen(
        [
            # No --no-browser: this machine has none (no DISPLAY, nothing on PATH) and kit lab
            # says so itself instead of JupyterLab's "No web browser found".
            *(str(Path(sys.executable).parent / "kit"), "lab"),
            *("--port", str(port), "--folder", str(tmp_path / "mine")),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=2) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert lab.poll() is None, Path(log.name).read_text()
                assert time.monotonic() < deadline, Path(log.name).read_text()
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            # The course opens at 00 (through the token login when no token is given).
            assert "/lab/tree/00_setup.ipynb" in urllib.parse.unquote(page.geturl())
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        down = subprocess.run(
            [sys.executable, "-m", "kit.cli", "cloud", "down"],
            env={**env, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
        )
    text = Path(log.name).read_text()
    assert str(tmp_path / "mine") in text and "00_setup.ipynb: copied from the course." in text
    assert (tmp_path / "mine" / "04_run_prototype.ipynb").exists()
    assert f"The local cloud runs on localhost:{ports[0]}" in text  # kit lab starts it
    assert down.stdout.strip() == "Stopped the local cloud."
    assert "`kit stop` stops them" in text  # what keeps running after JupyterLab stops
    assert "No web browser on this computer" in text and "No web browser found" not in text


def test_every_notebook_picture_travels_with_the_notebook() -> None:
    # JupyterLab serves notebooks/ only, and an HTML export must stand alone: a picture is an
    # attachment of its cell (the same bytes as images/), never a path outside notebooks/.
    # JupyterLab draws only bitmap attachments (an SVG one stays a broken image), so each is
    # a PNG drawn from its SVG by tools/render_pictures.py, at twice the SVG's size.
    import base64
    import re
    import struct

    import nbformat

    pictures = 0
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", cell.source):
                assert target.startswith("attachment:"), f"{path.name}: {target}"
                name = target.removeprefix("attachment:")
                ((kind, data),) = cell.attachments[name].items()
                assert kind == "image/png", f"{path.name}: {name} is {kind}"
                png = base64.b64decode(data)
                assert png == (ROOT / "images" / name).read_bytes(), name
                svg = (ROOT / "images" / name).with_suffix(".svg").read_text()
                size = re.search(r'width="(\d+)" height="(\d+)"', svg).groups()
                assert struct.unpack(">II", png[16:24]) == tuple(2 * int(v) for v in size), name
                pictures += 1
    assert pictures >= 2


def test_the_html_export_embeds_the_pictures() -> None:
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(ROOT / "notebooks" / "00_setup.ipynb", as_version=4)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    assert "data:image/png;base64," in body and "../images/" not in body


def test_lab_terminals_find_kit(monkeypatch) -> None:
    # JupyterLab's terminals inherit its PATH: the kit's bin folder comes first, once.
    from kit import environment

    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"/usr/bin:{bin_dir}:/bin")
    path = environment.for_jupyterlab(bin_dir)["PATH"].split(":")
    assert path == [bin_dir, "/usr/bin", "/bin"] and (Path(bin_dir) / "kit").exists()


def test_every_picture_the_readme_shows_is_committed() -> None:
    import re

    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert any("screenshot" in target for target in shown)
    tracked = subprocess.run(
        ["git", "ls-files", "images"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    for target in shown:
        assert (ROOT / target).is_file() and target in tracked, target


@pytest.fixture(scope="module")
def module_home() -> Path:
    from kit.places import kit_home

    return kit_home()


def test_a_module_wide_fixture_never_writes_to_the_users_data_folder(
    module_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A local cloud shared by a module's tests lives in this run's folder.
    assert module_home.is_relative_to(tmp_path_factory.getbasetemp())


# The README's steps for Windows, macOS and conda, checked against the code they name.
PLATFORMS = "### Windows, macOS and conda"
PROGRAMS = re.compile(r"(kit|python3?(\.\d+)?|py|conda|make)$")


def platform_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(PLATFORMS)
    end = readme.index("\n### ", start + len(PLATFORMS))
    return readme[start:end]


def platform_commands() -> list[list[str]]:
    """Each command the section gives, in a code block or in `backticks`, as its words, when it
    starts with a program of the kit's own (a path to one, such as .venv/bin/kit, too)."""
    section = platform_section()
    lines = [
        line
        for block in re.findall(r"```\w*\n(.*?)```", section, re.DOTALL)
        for line in block.splitlines()
    ]
    spans = re.findall(
        r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", section, flags=re.DOTALL)
    )
    commands = []
    for text in lines + spans:
        words = text.split()
        if words and PROGRAMS.match(re.split(r"[\\/]", words[0])[-1]):
            commands.append(words)
    return commands


def test_the_platform_steps_name_kit_commands_and_options_that_exist() -> None:
    from kit.cli import build_parser

    checked = set()
    for words in platform_commands():
        program = re.split(r"[\\/]", words[0])[-1]
        if program != "kit" or len(words) == 1:
            continue
        # The kit's own parser: an unknown command or option raises UsageError.
        args = build_parser().parse_args(words[1:])
        assert hasattr(args, "run"), words
        checked.add(args.command)
    assert {"lab", "doctor", "boards", "use", "cloud", "class"} <= checked, checked


def test_the_platform_steps_name_programs_files_and_targets_that_exist() -> None:
    import importlib.util
    import sysconfig

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "kit" in pyproject["project"]["scripts"]
    environment = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    section = platform_section()
    # A venv keeps its programs in Scripts\ on Windows and bin/ elsewhere.
    schemes = sysconfig.get_scheme_names()
    for scheme, path in (("nt", ".venv\\Scripts\\"), ("posix", ".venv/bin/")):
        scheme = f"{scheme}_venv" if f"{scheme}_venv" in schemes else f"{scheme}_prefix"
        scheme = scheme if scheme in schemes else "nt"
        where = sysconfig.get_path("scripts", scheme, {"base": ".venv", "platbase": ".venv"})
        assert where.replace("/", path[-1]) + path[-1] == path
        assert f"{path}python -m pip install -e ." in section
        assert f"{path}kit lab" in section
    seen = set()
    for words in platform_commands():
        program = re.split(r"[\\/]", words[0])[-1]
        seen.add(program)
        if "-m" in words:  # python -m MODULE, py -3 -m MODULE
            module = words[words.index("-m") + 1]
            assert importlib.util.find_spec(module) is not None, words
            if module == "pip" and "-e" in words:
                target = words[words.index("-e") + 1].strip("\"'")
                assert target in (".", ".[dev]"), words
                if target == ".[dev]":
                    assert "dev" in pyproject["project"]["optional-dependencies"]
        elif program == "conda":
            if "-f" in words:
                assert (ROOT / words[words.index("-f") + 1]).is_file(), words
            if words[1] == "activate":
                assert words[2] == environment["name"], words
        elif program == "make" and len(words) > 1:
            assert re.search(rf"^{words[1]}:", makefile, re.MULTILINE), words
    assert {"kit", "python", "py", "python3", "conda", "make"} <= seen, seen


def test_the_platform_section_gives_the_kits_ports_and_addresses(tmp_path: Path) -> None:
    from kit.cli import build_parser
    from kit.cloud import options
    from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT
    from kit.sim.serial_port import VirtualSerialPort

    section = platform_section()
    site_port = build_parser().parse_args(["class", "serve"]).port
    mentioned = {int(port) for port in re.findall(r"\b(8\d\d\d)\b", section)}
    assert mentioned == {site_port, MQTT_TLS_PORT, WEBSOCKET_TLS_PORT} == {8443, 8883, 8884}
    # For one laptop, the local cloud and the virtual board's socket are on 127.0.0.1 only ...
    assert options.LocalOptions().host == "127.0.0.1" and "127.0.0.1 only" in section
    from kit import settings, steps

    assert steps.open_chosen_cloud(settings.Settings()).options.host == "127.0.0.1"
    port = VirtualSerialPort(use_pty=False)
    try:
        assert port._server.getsockname()[0] == "127.0.0.1"
    finally:
        port.close()
    # ... and --listen (as the class's cloud) listens on every address.
    listening = build_parser().parse_args(["cloud", "up", "--listen"])
    assert options.from_arguments(listening).host == "0.0.0.0" and "0.0.0.0" in section
    serving = build_parser().parse_args(["class", "serve"])
    assert serving.listen is None and not serving.http  # the CLI's default: every address


def test_the_platform_section_gives_each_systems_data_folder(monkeypatch, tmp_path) -> None:
    import platformdirs
    import platformdirs.macos
    import platformdirs.unix
    import platformdirs.windows

    from kit.places import kit_home

    section = platform_section()
    # The kit's folder is platformdirs' user data folder for "kit" when KIT_HOME is unset.
    monkeypatch.delenv("KIT_HOME")
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda name: str(tmp_path / name))
    assert kit_home(create=False) == tmp_path / "kit"
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    home = os.path.expanduser("~")
    for folder, system in (
        ("~/Library/Application Support/kit", platformdirs.macos.MacOS),
        ("~/.local/share/kit", platformdirs.unix.Unix),
    ):
        assert system("kit").user_data_dir == folder.replace("~", home, 1)
        assert f"`{folder}`" in section
    local = "C:\\Users\\<you>\\AppData\\Local"
    monkeypatch.setattr(platformdirs.windows, "get_win_folder", lambda name: local)
    windows = platformdirs.windows.Windows("kit").user_data_dir.replace("/", "\\")
    assert windows == f"{local}\\kit\\kit" and f"`{windows}`" in section
    assert "\\LocalCache\\Local\\kit\\kit" in section  # the same folder, as the Store keeps it
