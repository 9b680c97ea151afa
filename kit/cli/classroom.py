"""`kit class …`: the instructor's class server (kit.classroom)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kit import arguments, environment
from kit.cli.parser import Command
from kit.cloud import Cloud
from kit.errors import ClassError

if TYPE_CHECKING:  # for the annotation only: provisioning loads the virtual board's code
    from kit.classroom.provision import Progress


def register(command: Command) -> None:
    """Add `kit class` and its actions."""
    klass = command("class", cmd_class, "Run a class: one cloud for the room, behind a web site.")
    klass.add_argument("--folder", type=Path, help="the class folder (default: KIT_HOME/class)")
    actions = klass.add_subparsers(dest="action", metavar="ACTION", required=True)

    init = actions.add_parser("init", help="create the class and the instructor's account")
    init.add_argument(
        "--host", help="the name students reach this computer by (default: its .local name)"
    )
    init.add_argument(
        "--port", type=arguments.port, default=8443, help="the site's port (default 8443)"
    )
    init.add_argument(
        "--cloud",
        choices=("local", "aws"),
        default="local",
        help="the class's cloud (default: local)",
    )
    init.add_argument("--profile", default="", help="AWS profile (with --cloud aws)")
    init.add_argument("--region", default="", help="AWS region (with --cloud aws)")

    roster = actions.add_parser(
        "roster",
        help="the students: add FILE.csv | list | reset-password NAME | revoke NAME | remove NAME",
    )
    roster.add_argument("what", choices=("add", "list", "reset-password", "revoke", "remove"))
    roster.add_argument("target", nargs="?", help="the CSV file (add) or the username")

    serve = actions.add_parser("serve", help="run the class site (HTTPS) until Ctrl+C")
    serve.add_argument(
        "--listen",
        default=None,
        help="the address to listen on (default: every address; 127.0.0.1 with --http)",
    )
    serve.add_argument(
        "--port", type=arguments.port, default=8443, help="the site's port (default 8443)"
    )
    serve.add_argument(
        "--http",
        action="store_true",
        help="plain HTTP, only with --listen 127.0.0.1 (behind a reverse proxy)",
    )
    serve.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Proto from a reverse proxy",
    )
    serve.add_argument(
        "--broker-host",
        type=arguments.host_name,
        help="the name boards use for the local broker (default: this computer's .local name)",
    )

    provision = actions.add_parser(
        "provision", help="a roster to accounts, and with --virtual a publishing board each"
    )
    provision.add_argument("roster_file", type=Path, metavar="FILE.csv", help="the roster")
    provision.add_argument(
        "--virtual", action="store_true", help="a virtual board for each student (a demo class)"
    )
    provision.add_argument(
        "--interval", type=float, default=10.0, help="seconds between readings (default 10)"
    )
    provision.add_argument(
        "--broker-host",
        type=arguments.host_name,
        help="the name boards use for the local broker (default: this computer's .local name)",
    )

    teardown = actions.add_parser("teardown", help="remove every device the class registered")
    teardown.add_argument(
        "--accounts", action="store_true", help="remove the students' accounts too"
    )
    teardown.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _class_cloud(folder: Path, broker_host: str | None = None) -> Cloud:
    """The class's cloud, started if the kit runs it; says where it runs."""
    from kit.classroom import server

    cloud = server.open_class_cloud(folder, broker_host, environment.read())
    print(cloud.ensure_running(progress=lambda line: print(line, flush=True)), flush=True)
    if not broker_host:
        _note_unsure_name("--broker-host")
    return cloud


def _note_unsure_name(option: str) -> None:
    """Say on stderr when this computer's .local name, used for want of `option`, is a guess."""
    from kit.cloud.local_broker import local_name

    warning = local_name().warning(option)
    if warning:
        print(f"Note: {warning}", file=sys.stderr, flush=True)


def cmd_class(args: argparse.Namespace) -> None:
    """Run one class action."""
    from kit.classroom import server

    folder = args.folder or server.class_folder()
    if args.action == "init":
        host = args.host or server.default_host()
        if not args.host:
            _note_unsure_name("--host")
        created = server.init(folder, host, args.port, args.cloud, args.profile, args.region)
        print(f"Created the class in {folder}.")
        print(f"Address: {created.address}")
        print(f"Web certificate fingerprint (SHA-256): {created.fingerprint}")
        print(f"Instructor: {created.username}, password {created.password} (shown only now)")
    elif args.action == "roster":
        _roster(folder, args)
    elif args.action == "provision":
        _provision(folder, args)
    elif args.action == "serve":
        listen = args.listen or ("127.0.0.1" if args.http else "0.0.0.0")
        # Checked here as well as in serve: a refused --http fails before the cloud starts,
        # and so does a port another program (a second site) holds; serve closes the sockets
        # (and if the cloud cannot start, this process ends, which closes them).
        server.check_listening(listen, args.http, args.proxy_headers)
        sockets = server.site_sockets(listen, args.port)
        cloud = _class_cloud(folder, args.broker_host)
        if not args.http:
            certificate, renewed = server.web_identity(folder)
            print(f"Web certificate fingerprint (SHA-256): {certificate.fingerprint}")
            if renewed:
                print(
                    "This fingerprint is new: the handouts show the old one. Read it out to "
                    "the class, or print new cards (`kit class roster reset-password NAME`)."
                )
        scheme = "http" if args.http else "https"
        print(
            f"The class site runs on {scheme}://{listen}:{args.port}/ ; stop it with Ctrl+C.",
            flush=True,
        )
        server.serve(
            folder,
            cloud,
            listen=listen,
            port=args.port,
            http=args.http,
            proxy_headers=args.proxy_headers,
            sockets=sockets,
        )
    else:
        if not args.yes:
            raise ClassError(
                "This removes every device of the class from the cloud: add --yes to confirm."
            )
        removed = server.teardown(folder, _class_cloud(folder), accounts=args.accounts)
        print(
            f"Removed {len(removed)} device(s) and the virtual boards"
            + (", and the students' accounts." if args.accounts else ".")
        )
        from kit.cloud import service  # the class's local cloud, if it runs: the course is over

        if service.stop_service():
            print("Stopped the local cloud (`kit class serve` starts it again).")


def _roster(folder: Path, args: argparse.Namespace) -> None:
    from kit.classroom import server
    from kit.classroom.store import open_store

    if args.what == "list":
        with open_store(folder) as store:
            owned = store.all_things()
            for account in store.accounts():
                devices = sorted(t for t, o in owned.items() if o == account.username)
                print(
                    f"{account.username:<24} {account.role:<10} {account.name}  {' '.join(devices)}"
                )
        return
    if not args.target:
        needed = "a CSV file" if args.what == "add" else "a username"
        raise ClassError(f"`kit class roster {args.what}` needs {needed}.")
    if args.what == "add":
        cards, handout = server.add_roster(folder, Path(args.target))
        print(f"Added {len(cards)} student(s). Their passwords are only on the handout: {handout}")
    elif args.what == "reset-password":
        handout = server.reset_password(folder, args.target)
        print(f"New password for {args.target} (their sessions ended), on the handout: {handout}")
    elif args.what == "revoke":
        ended = server.revoke(folder, args.target)
        print(
            f"Ended {ended} notebook login(s) and every browser session of {args.target}: "
            "their password still works to log in again."
        )
    else:
        removed = server.remove(folder, args.target, _class_cloud(folder))
        print(
            f"Removed {args.target}"
            + (f" and their devices: {', '.join(removed)}." if removed else ".")
        )


def _provision(folder: Path, args: argparse.Namespace) -> None:
    from kit.classroom import provision

    cloud = _class_cloud(folder, args.broker_host)
    done = provision.provision(
        folder, args.roster_file, cloud, args.virtual, args.interval, progress=_progress_bar
    )
    if done.handout is not None:
        print(f"Added {len(done.cards)} student(s); their cards: {done.handout}")
    else:
        print("Every student of the roster has an account already.")
    if args.virtual:
        print(
            f"Registered {len(done.registered)} virtual board(s) now; {done.boards} run in the "
            "background (`kit class teardown --yes` stops and removes them)."
        )


def _progress_bar(step: Progress) -> None:
    """A progress bar with counts, time so far and time left (a line per tenth off a tty)."""
    tty = sys.stdout.isatty()
    tenth = max(1, step.total // 10)
    if not tty and step.done % tenth and step.done != step.total:
        return
    width = 30
    filled = width * step.done // max(1, step.total)
    left = "?" if step.left is None else f"{step.left:.0f} s"
    line = (
        f"[{'#' * filled}{'.' * (width - filled)}] {step.done}/{step.total} students · "
        f"{step.elapsed:.0f} s so far · {left} left"
    )
    end = "\n" if not tty or step.done == step.total else ""
    print(("\r" if tty else "") + line, end=end, flush=True)
