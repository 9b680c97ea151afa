"""The workflow that runs the kit on Windows, macOS and Linux (.github/workflows/ci.yml): what it
runs, and that its list of test files is honest: none of them drives a program that only the
Makefile's apt step installs (that is what `make test` on Linux, the main gate, is for)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
SYSTEMS = {"ubuntu-latest", "windows-latest", "macos-latest"}

# How a test's text shows that it drives each Debian package the Makefile installs with
# tools/ensure-apt.sh. This file names them all in order to look for them, so it is not searched.
USES = {
    "g++": re.compile(r"g\+\+"),
    "openssl": re.compile(r"\bopenssl\b"),  # the command (cryptography's "OpenSSL" is no match)
    "mosquitto-clients": re.compile(r"mosquitto_(pub|sub)"),
    "mosquitto": re.compile(r"\bmosquitto\b(?!-)"),  # the broker, for the benchmarks
    "libbearssl-dev": re.compile(r"bearssl\.h|-lbearssl|libbearssl"),
    "chromium": re.compile(r"chromium|playwright", re.IGNORECASE),
    "zsh": re.compile(r"\bzsh\b"),
}


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def the_job() -> dict:
    (job,) = workflow()["jobs"].values()
    return job


def listed_tests() -> list[str]:
    """The test files the workflow runs, from the TESTS variable its pytest step reads."""
    job = the_job()
    (pytest_step,) = [s for s in job["steps"] if "pytest" in s.get("run", "")]
    assert "$TESTS" in pytest_step["run"]
    return job["env"]["TESTS"].split()


def apt_packages() -> set[str]:
    """Every package the Makefile hands to tools/ensure-apt.sh (TEST_APT_PACKAGES expanded)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+)\s*:?=\s*(.*)$", makefile, re.MULTILINE))
    packages: set[str] = set()
    for arguments in re.findall(r"ensure-apt\.sh\s+(.*)$", makefile, re.MULTILINE):
        for word in arguments.split():
            variable = re.fullmatch(r"\$\((\w+)\)", word)
            packages.update(variables[variable.group(1)].split() if variable else [word])
    return packages


def read_with_helpers(path: Path) -> dict[Path, str]:
    """The text of `path` and of every module beside it that it imports (tests/helpers.py,
    another test file ...), transitively, plus the scripts under bench/ it names and
    tests/conftest.py, which pytest loads for every test."""
    texts: dict[Path, str] = {}
    waiting = [path, path.parent / "conftest.py"]
    while waiting:
        current = waiting.pop()
        if current in texts or not current.is_file():
            continue
        text = texts[current] = current.read_text(encoding="utf-8")
        names: list[str] = []
        for line in text.splitlines():
            if found := re.match(r"\s*from\s+(\w+)[\w.]*\s+import\b", line):
                names.append(found.group(1))
            elif found := re.match(r"\s*import\s+([\w., ]+?)(\s+as\s+\w+)?\s*(#.*)?$", line):
                names += [part.strip().split(".")[0] for part in found.group(1).split(",")]
        waiting += [current.parent / f"{name}.py" for name in names]
        for script in re.findall(r"bench[\"']?\s*/\s*[\"']?(\w+\.py)", text):
            waiting.append(ROOT / "bench" / script)
    return texts


def apt_tools_used(path: Path) -> dict[str, list[str]]:
    """Which apt packages `path` (with its helpers) drives, and in which file each shows."""
    used: dict[str, list[str]] = {}
    for source, text in read_with_helpers(path).items():
        for package, pattern in USES.items():
            if pattern.search(text):
                used.setdefault(package, []).append(source.name)
    return used


def test_the_matrix_names_the_three_systems_and_both_pythons() -> None:
    matrix = the_job()["strategy"]["matrix"]
    assert set(matrix["os"]) == SYSTEMS
    # Strings: an unquoted 3.10 in YAML is the number 3.1.
    assert set(matrix["python"]) == {"3.10", "3.13"}
    assert the_job()["runs-on"] == "${{ matrix.os }}"
    setup = next(s for s in the_job()["steps"] if s.get("uses", "").startswith("actions/setup-py"))
    assert setup["with"]["python-version"] == "${{ matrix.python }}"
    # The oldest Python in the matrix is the oldest the kit accepts.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["requires-python"] == ">=3.10"


def test_it_installs_the_kit_then_runs_kit_demo_and_always_kit_stop() -> None:
    job = the_job()
    runs = [s.get("run", "") for s in job["steps"]]
    commands = [line.strip() for run in runs for line in run.splitlines()]
    assert "python -m venv .venv" in commands
    assert '$VENV_BIN/python -m pip install --quiet -e ".[dev]"' in commands
    windows_or_not = "startsWith(matrix.os, 'windows') && '.venv/Scripts' || '.venv/bin'"
    assert job["env"]["VENV_BIN"] == "${{ " + windows_or_not + " }}"
    (demo,) = [s for s in job["steps"] if s.get("run") == "$VENV_BIN/kit demo"]
    assert "if" not in demo and not demo.get("continue-on-error")  # a failed demo fails the job
    (stop,) = [s for s in job["steps"] if s.get("run") == "$VENV_BIN/kit stop"]
    assert "always()" in stop["if"]
    assert stop["env"]["KIT_HOME"].endswith("/build/kit-home")  # where kit demo keeps its data
    assert job["defaults"]["run"]["shell"] == "bash"
    assert job["strategy"]["fail-fast"] is False


def test_every_listed_test_file_exists_once() -> None:
    listed = listed_tests()
    assert len(listed) == len(set(listed))
    for name in listed:
        assert re.fullmatch(r"tests/test_\w+\.py", name), name
        assert (ROOT / name).is_file(), f"{name} is in {WORKFLOW.name} but does not exist"


def test_every_apt_package_of_the_makefile_has_a_pattern() -> None:
    # A package added to the Makefile needs a way to find the tests that drive it.
    assert apt_packages() <= set(USES), apt_packages() - set(USES)
    assert {"g++", "openssl", "mosquitto-clients", "libbearssl-dev", "chromium", "zsh"} <= (
        apt_packages()
    )


def test_no_listed_test_file_drives_an_apt_only_program() -> None:
    this_file = Path(__file__).resolve()
    wrong = {}
    for name in listed_tests():
        path = ROOT / name
        if path.resolve() == this_file:
            continue  # it names every program, to look for them
        used = apt_tools_used(path)
        if used:
            wrong[name] = used
    assert not wrong, f"these need apt packages and cannot run on Windows or macOS: {wrong}"


def test_the_search_finds_a_program_behind_an_import(tmp_path: Path) -> None:
    # The check above is only as good as this search: a program used in a helper counts.
    (tmp_path / "test_plain.py").write_text("from peers import talk\n\ndef test(): talk()\n")
    (tmp_path / "peers.py").write_text(
        'import subprocess\n\ndef talk():\n    subprocess.run(["mosquitto_pub", "-t", "x"])\n'
    )
    assert apt_tools_used(tmp_path / "test_plain.py") == {"mosquitto-clients": ["peers.py"]}
    (tmp_path / "test_clean.py").write_text("import os, peers_not_here\n")
    assert apt_tools_used(tmp_path / "test_clean.py") == {}
    # And on the real suite: the sketch's host test compiles with g++ against libbearssl, and
    # the CLI's CSR test verifies with openssl through test_board.
    assert set(apt_tools_used(ROOT / "tests" / "test_aws_sketch.py")) >= {"g++", "libbearssl-dev"}
    assert "openssl" in apt_tools_used(ROOT / "tests" / "test_kit_csr.py")
