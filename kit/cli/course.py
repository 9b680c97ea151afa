"""`kit doctor`, `demo`, `use`, `lab`: the course around the steps."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from kit import arguments
from kit.cli.parser import Command
from kit.places import checkout, kit_home, private_dir


def register(command: Command) -> None:
    """Add the course commands."""
    doctor = command(
        "doctor", cmd_doctor, "Check this computer for the course (boards, cloud, tools)."
    )
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="set damaged files in the data folder aside (renamed, never deleted) and start afresh",
    )
    demo = command("demo", cmd_demo, "Run the whole course headless; results in build/.")
    demo.add_argument("--build", type=Path, help="where to write (default: build/ in the checkout)")

    use = command("use", cmd_use, "Choose the board and the cloud for the course.")
    use.add_argument("board", nargs="?", help="'virtual', 'auto' (the attached board) or a port")
    use.add_argument("--cloud", choices=("local", "aws"), help="which cloud (default: unchanged)")
    use.add_argument("--profile", help="AWS profile")
    use.add_argument("--region", help="AWS region")

    command("stop", cmd_stop, "Stop the virtual boards and the local cloud the kit started.")

    lab = command("lab", cmd_lab, "Open the course notebooks in JupyterLab.")
    lab.add_argument(
        "--port", type=arguments.port, help="port for JupyterLab (default: its own choice)"
    )
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument(
        "--folder",
        type=Path,
        help="where your copies of the notebooks live (default: my-notebooks/ in the checkout)",
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print the readiness report."""
    from kit import doctor, repair

    if args.repair:
        done = repair.repair()
        for step in done:
            print(f"Set aside: {step.problem.split(' is damaged')[0]} (kept as {step.kept}).")
        print("Repaired the data folder." if done else "Nothing in the data folder is damaged.")
    report = doctor.run()
    print(report.text())
    if report.ok:
        return 0
    waiting = sum(not check.ok for check in report.checks)
    print(
        f"Doctor problem: {waiting} check(s) need attention: follow the advice under each !! line.",
        file=sys.stderr,
    )
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the course headless."""
    from kit import demo

    return demo.run(args.build, progress=lambda line: print(line, flush=True))


def cmd_use(args: argparse.Namespace) -> None:
    """Save which board and cloud the course uses."""
    from kit import course

    chosen = course.use(args.board, args.cloud, args.profile or "", args.region or "")
    print(chosen.describe())


def cmd_stop(args: argparse.Namespace) -> None:
    """Stop everything the kit runs in the background."""
    from kit import steps

    for sentence in steps.stop_everything():
        print(sentence)


def cmd_lab(args: argparse.Namespace) -> int:
    """Start JupyterLab on the student's copies of the notebooks and wait until it is stopped."""
    from kit import environment, notebook_copies, settings, steps

    notebooks = args.folder or checkout() / "my-notebooks"
    for copied in notebook_copies.prepare(checkout() / "notebooks", notebooks):
        if copied.action != "current":
            print(copied.note, flush=True)
    cloud = steps.open_chosen_cloud(settings.load(), environment.read())
    print(cloud.ensure_running(progress=lambda line: print(line, flush=True)))
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={notebooks}",
        "--LabApp.default_url=/lab/tree/00_setup.ipynb",  # the course starts there
    ]
    sockets = private_dir(kit_home() / "kernels") / "k"
    if os.name == "posix" and len(str(sockets)) < 90:
        # Kernels talk to JupyterLab over local sockets in the private data folder, not over
        # unencrypted TCP on 127.0.0.1 (which every kernel warns about when it starts). A
        # socket's path is limited to ~107 bytes, and each kernel adds "-<n>" to the prefix.
        command += ["--KernelManager.transport=ipc", f"--KernelManager.ip={sockets}"]
    if args.port:
        command.append(f"--ServerApp.port={args.port}")
    if args.no_browser or not _browser_here():
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI run as root; JupyterLab refuses that unless told it is deliberate.
        command.append("--allow-root")
    print(
        f"Opening the course in JupyterLab on your copies of the notebooks ({notebooks}; "
        "git ignores them, so `git pull` keeps working). Stop it with Ctrl+C.",
        flush=True,
    )
    print(
        "The local cloud and the virtual board keep running after JupyterLab stops, so a "
        "restarted notebook finds them; `kit stop` stops them.",
        flush=True,
    )
    _quiet_announcements()
    env = environment.for_jupyterlab(str(Path(sys.executable).parent))
    if os.name == "posix":
        # Become JupyterLab, so signals (Ctrl+C, a terminal closing) reach it directly.
        os.execve(sys.executable, command, env)
    return subprocess.call(command, env=env)


def _browser_here() -> bool:
    """Whether this computer can open a browser (a server or a container cannot); say so."""
    import webbrowser

    try:
        webbrowser.get()  # what JupyterLab uses to open one
    except webbrowser.Error:
        print(
            "No web browser on this computer: open the address JupyterLab prints below (the "
            "one with 127.0.0.1 and its token) in a browser here, or through an SSH tunnel.",
            flush=True,
        )
        return False
    return True


# JupyterLab's own defaults for the kit's environment: no "official Jupyter news?" question and
# no update check (a classroom may be offline, and a pop-up covers the notebook on a projector).
QUIET = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}
}


def _quiet_announcements() -> None:
    """Add the quiet settings to JupyterLab's overrides.json in the kit's environment."""
    import json

    # JupyterLab's application folder in this environment (jupyterlab.commands.get_app_dir).
    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    try:
        current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return  # someone's own overrides file, which the kit leaves alone
    if not isinstance(current, dict) or all(
        current.get(key) == value for key, value in QUIET.items()
    ):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**current, **QUIET}, indent=2) + "\n", encoding="utf-8")
