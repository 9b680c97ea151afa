"""`kit doctor`, `demo`, `use`, `lab`: the course around the steps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit import arguments, background
from kit.board_ports import example_port
from kit.cli.parser import Command
from kit.errors import UsageError
from kit.places import checkout, kit_home


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
    use.add_argument(
        "board",
        nargs="?",
        help=f"'virtual', 'auto' (the attached board) or a port, such as {example_port()}",
    )
    use.add_argument(
        "--cloud", choices=("local", "aws", "class"), help="which cloud (default: unchanged)"
    )
    use.add_argument("--profile", help="AWS profile")
    use.add_argument("--region", help="AWS region")
    use.add_argument("--url", help="the class server's address, as on your card (--cloud class)")
    use.add_argument("--user", help="your username on the class server (--cloud class)")
    use.add_argument(
        "--fingerprint",
        help="the class server's certificate fingerprint from your card (else you are asked)",
    )
    use.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the class password from standard input (scripts), not from a prompt",
    )

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

    if args.cloud == "class" and (args.url or args.user):
        _log_in_to_class(args)
    chosen = course.use(args.board, args.cloud, args.profile or "", args.region or "")
    print(chosen.describe())


def _log_in_to_class(args: argparse.Namespace) -> None:
    """Compare the class server's fingerprint with the card, then trade the password for a
    token kept in the data folder (the password is never kept)."""
    import getpass

    from kit.cloud import class_cloud

    if not (args.url and args.user):
        raise UsageError("Logging in to a class needs both --url and --user (from your card).")
    shown = class_cloud.fingerprint_of(class_cloud.served_certificate(args.url))
    if args.fingerprint:
        confirmed = args.fingerprint
    else:
        print(f"The class server shows the certificate fingerprint (SHA-256):\n  {shown}")
        answer = input("Is it the one on your card? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            raise UsageError("Not logged in: ask your teacher which fingerprint is right.")
        confirmed = shown
    password = (
        sys.stdin.readline().rstrip("\n")
        if args.password_stdin
        else getpass.getpass(f"Password of {args.user}: ")
    )
    link = class_cloud.log_in(args.url, args.user, password, confirmed)
    print(f"Logged in to {link.url} as {link.username}.")


def cmd_stop(args: argparse.Namespace) -> None:
    """Stop everything the kit runs in the background."""
    from kit import steps

    for sentence in steps.stop_everything():
        print(sentence)


def cmd_lab(args: argparse.Namespace) -> int:
    """Start JupyterLab on the student's copies of the notebooks and wait until it is stopped."""
    from kit import environment, lab, notebook_copies, settings, steps

    notebooks = args.folder or checkout() / "my-notebooks"
    for copied in notebook_copies.prepare(checkout() / "notebooks", notebooks):
        if copied.action != "current":
            print(copied.note, flush=True)
    cloud = steps.open_chosen_cloud(settings.load(), environment.read())
    print(cloud.ensure_running(progress=lambda line: print(line, flush=True)))
    open_browser = not args.no_browser and lab.browser_here()
    if not args.no_browser and not open_browser:
        print(
            "No web browser on this computer: open the address JupyterLab prints below (the "
            "one with 127.0.0.1 and its token) in a browser here, or through an SSH tunnel.",
            flush=True,
        )
    command = lab.command(notebooks, kit_home(), args.port, open_browser)
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
    lab.quiet_jupyterlab()
    kernels = str(lab.kernel_spec(kit_home()))
    env = environment.for_jupyterlab(str(Path(sys.executable).parent), kernels)
    return background.become(command, env)
