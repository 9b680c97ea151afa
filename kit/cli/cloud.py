"""`kit register`, `things`, `unregister`, `cloud`, `watch`, `led`: the cloud side."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kit import arguments, certs, devices, environment, settings, steps, telemetry
from kit.cli.inputs import SLOT, output_folder, read_text
from kit.cli.parser import Command
from kit.cloud import Cloud, open_cloud
from kit.cloud import options as local_options
from kit.errors import BrokerNotRunningError, UsageError
from kit.printable import printable

if TYPE_CHECKING:
    from kit.cloud.service import ServiceState


def register(command: Command) -> None:
    """Add the cloud commands."""
    watch = command(
        "watch", cmd_watch, "Print a thing's messages as they arrive (the course's cloud)."
    )
    watch.add_argument(
        "thing", nargs="?", help="the thing (default: the current device; 'all' for every thing)"
    )

    led = command("led", cmd_led, "Set a thing's LED brightness, 0-100 (the course's cloud).")
    led.add_argument("thing", help="the thing")
    led.add_argument(
        "value", type=arguments.whole_number(0, 100), help="brightness in percent, 0-100"
    )

    def cloud_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--cloud",
            choices=settings.CLOUDS,
            help="which cloud (default: the course's, as `kit use` chose it)",
        )
        sub.add_argument("--profile", help="AWS profile (default: the standard chain)")
        sub.add_argument("--region", help="AWS region (default: the profile's)")

    reg = command("register", cmd_register, "Register a CSR: a thing, its certificate, the broker.")
    reg.add_argument("csr", help="the CSR file (pasted text is fine), or - for stdin")
    reg.add_argument("--out", type=Path, help="also copy certificate.pem and ca.pem here")
    reg.add_argument("--slot", type=SLOT, help="the key slot the CSR was made in (default 0)")
    cloud_options(reg)

    things = command("things", cmd_things, "List registered things.")
    cloud_options(things)

    unreg = command("unregister", cmd_unregister, "Remove a thing and its certificates.")
    unreg.add_argument("thing", nargs="?", help="the thing (default: the current device)")
    unreg.add_argument("--all", action="store_true", help="remove every thing (asks first)")
    unreg.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    cloud_options(unreg)

    cloud = command("cloud", cmd_cloud, "Run the local cloud: kit cloud up|down|status.")
    cloud.add_argument("action", choices=("up", "down", "status", "run"))
    local_options.add_arguments(cloud, listen_flag=True)


def cmd_watch(args: argparse.Namespace) -> None:
    """Print each message for a thing (or all) until Ctrl+C."""
    cloud = _watching_cloud()
    thing = None if args.thing == "all" else (args.thing or devices.current_name())

    def show(event: telemetry.Event) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        thing = printable(event.thing)
        if isinstance(event, telemetry.Reading):
            print(
                f"{stamp} {thing}: {event.temperature:.1f} F, {event.humidity:.0f} %",
                flush=True,
            )
        elif isinstance(event, telemetry.LedState):
            print(f"{stamp} {thing}: LED at {event.value} %", flush=True)
        elif isinstance(event, telemetry.Lifecycle):
            print(f"{stamp} {thing}: {'connected' if event.connected else 'left'}", flush=True)
        else:
            print(
                f"{stamp} {thing}: rejected ({printable(event.reason)}): {event.payload[:60]!r}",
                flush=True,
            )

    with telemetry.Telemetry(cloud.observer(), thing, on_event=show, renew=cloud.observer):
        print(f"Watching {thing or 'every thing'}; stop with Ctrl+C.", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


def cmd_led(args: argparse.Namespace) -> None:
    """Send one LED command and wait for the device's answer on led/state."""
    cloud = _watching_cloud()
    telemetry.check_brightness(args.value)
    with telemetry.Telemetry(cloud.observer(), args.thing) as watch:
        sent = time.time()
        watch.led(args.thing, args.value)
        deadline = time.monotonic() + 5
        while watch.led_answer(args.thing, since=sent) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = watch.led_answer(args.thing, since=sent)
    if answer is not None:
        print(f"{args.thing}: LED at {answer.value} %.")
    else:
        print(f"Sent {args.value} % to {args.thing}; the device has not answered (is it online?).")


def _watching_cloud() -> Cloud:
    """The course's cloud, if it can be reached (else BrokerNotRunningError saying how)."""
    cloud = steps.open_chosen_cloud(settings.load(), environment.read())
    status = cloud.status()
    if not status.reachable:
        raise BrokerNotRunningError(str(status))
    return cloud


def cmd_register(args: argparse.Namespace) -> None:
    """Register a CSR and write the device record."""
    out = output_folder(args.out)
    csr = certs.load_csr(read_text(args.csr))
    cloud = _chosen_cloud(args)
    registered = steps.register(cloud, csr, slot=args.slot)
    registration = registered.registration
    verb = "Registered" if registration.created else "Already registered:"
    print(f"{verb} {registration.thing} in the {cloud.name} cloud.")
    print(f"Broker: {registration.broker_host}:{registration.broker_port}")
    print(f"Certificate id: {registration.certificate_id}")
    if registered.became_current:
        before = (
            f" (it was {printable(registered.previous_current)})"
            if registered.previous_current
            else ""
        )
        print(f"{registration.thing} is now the current device{before}.")
    if out:
        cert, ca = registration.write(out)
        print(f"Wrote {cert} and {ca}.")


def cmd_things(args: argparse.Namespace) -> None:
    """List the registered things."""
    names = _chosen_cloud(args).things()
    print("\n".join(map(printable, names)) if names else "No things registered yet.")


def cmd_unregister(args: argparse.Namespace) -> int:
    """Remove one thing (or all) with its certificates."""
    cloud = _chosen_cloud(args)
    targets = cloud.made_by_kit() if args.all else [args.thing or devices.current_name()]
    if not targets:
        print("No things registered.")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("Add --yes to confirm removing: " + ", ".join(targets))
        answer = input(f"Remove {', '.join(targets)} from the {cloud.name} cloud? [y/N] ")
        if not answer.lower().startswith("y"):
            print("Nothing removed.")
            return 1
    if args.all:
        steps.teardown(cloud, progress=print)
        return 0
    for thing in targets:
        steps.unregister(cloud, thing)
        print(f"Removed {thing}.")
    return 0


def cmd_cloud(args: argparse.Namespace) -> None:
    """Run, start, stop or describe the local cloud."""
    from kit.cloud import local, service

    options = local_options.from_arguments(args)
    if args.action == "run":
        service.run_service(options)
    elif args.action == "up":
        started = service.start_service(options, progress=lambda line: print(line, flush=True))
        print(_running(started))
        print(f"Log: {local.cloud_dir() / 'broker.log'}")
        if not options.broker_host:
            _note_unsure_name(started.broker_host)
    elif args.action == "down":
        print(
            "Stopped the local cloud."
            if service.stop_service()
            else "The local cloud was not running."
        )
    else:
        state = service.service_state()
        if state is None:
            print("The local cloud is not running. Start it with `kit cloud up`.")
        else:
            print(_running(state))


def _running(state: ServiceState) -> str:
    """The line that says where the local cloud runs."""
    return (
        f"The local cloud runs (process {state.pid}): MQTT/TLS on "
        f"{printable(state.broker_host)}:{state.port}, WebSocket/TLS on port {state.ws_port}."
    )


def _note_unsure_name(broker_host: str) -> None:
    """Say on stderr when the broker's name is this computer's .local name and that is a guess."""
    from kit.cloud.local_broker import local_name

    name = local_name()
    if broker_host == name.name and name.doubt:
        print(f"Note: {name.warning('--broker-host')}", file=sys.stderr)


def _chosen_cloud(args: argparse.Namespace) -> Cloud:
    """The cloud --cloud names, else the course's (local, AWS with its profile and region, or
    the class this computer logged in to)."""
    if args.cloud:
        return open_cloud(args.cloud, profile=args.profile, region=args.region)
    course = settings.load()
    return open_cloud(
        course.cloud,
        profile=args.profile or course.profile or None,
        region=args.region or course.region or None,
    )
