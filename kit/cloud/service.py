"""The local cloud as a background service: `python -m kit.cloud.service` runs it; `kit cloud
up`, `kit lab` and the setup notebook start it (start_service) and find it (service_state).

The service owns KIT_HOME/cloud/service.json (its pid, ports and broker name) and holds
service.lock for as long as it runs, so "is it running" never trusts a pid alone. It writes its
log, broker.log, itself and rotates it by size (a few MB, a few old files kept); what it prints,
and a failed start's reason, go to service.out, which stays small. (A file that the process's
output is appended to as well could not rotate: the output would go on into the renamed file.)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kit import arguments, background, locks, logs
from kit.cloud import options as local_options
from kit.cloud.local import LocalCloud, cloud_dir
from kit.cloud.local_broker import check_ports_free
from kit.cloud.options import LocalOptions
from kit.errors import BrokerNotRunningError, CloudError, KitError
from kit.places import private_dir

LOG_BYTES, LOG_BACKUPS, LOG_FORMAT = logs.LOG_BYTES, logs.LOG_BACKUPS, logs.LOG_FORMAT
log = logging.getLogger("kit.cloud.service")  # not __name__: run with -m, that is __main__


@dataclass(frozen=True)
class ServiceState:
    """A running broker service, as other processes find it."""

    pid: int
    host: str
    port: int
    ws_port: int
    broker_host: str


def managed() -> background.Managed:
    """The service process's lock, state (service.json), output (service.out) and requests."""
    return background.Managed(cloud_dir(), "service", "service.out")


def log_file() -> Path:
    """The local cloud's log: the broker's decisions (accepted, refused, closed)."""
    return cloud_dir() / "broker.log"


def log_to(path: Path, max_bytes: int = LOG_BYTES, backups: int = LOG_BACKUPS) -> logging.Handler:
    """Write this process's log to `path`, rotated by size, with the broker's decisions (INFO)
    in it. The handler is returned."""
    handler = logs.log_to(path, max_bytes, backups)
    logging.getLogger("kit.broker").setLevel(logging.INFO)
    log.setLevel(logging.INFO)
    return handler


def service_state() -> ServiceState | None:
    """The running service, or None (a stale state file from a crashed run is ignored)."""
    values = background.running(managed())
    try:
        state = ServiceState(**(values or {}))
    except TypeError:
        return None  # no service, or a state file that is not one
    return state if _plausible(state) else None


def _plausible(state: ServiceState) -> bool:
    """Whether a state file's values can be a running service's (never pid 0, 1 or ours)."""
    numbers = (state.pid, state.port, state.ws_port)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return False
    texts = (state.host, state.broker_host)
    if not all(isinstance(t, str) and t.isprintable() and len(t) < 254 for t in texts):
        return False
    return state.pid > 1 and state.pid != os.getpid() and 0 <= state.port <= 65535


def run_service(options: LocalOptions) -> None:
    """Run the broker in the foreground until SIGTERM or Ctrl+C (what `kit cloud up` starts)."""
    private_dir(cloud_dir())
    lock = background.claim(managed(), wait=2.0)
    if lock is None:
        pid = locks.read_pid(managed().lock)
        raise CloudError(
            f"The local cloud is already running{f' (process {pid})' if pid else ''}. "
            "`kit cloud status` shows where; course.stop() in a notebook or `kit stop` stops it."
        )
    stopped = background.stop_requested(managed())  # kit stop, SIGTERM or Ctrl+C
    # The broker's decisions (accepted, refused, closed) go to the log, for notebook 05.
    log_to(log_file())
    with LocalCloud(options=options) as cloud:
        state = ServiceState(
            os.getpid(), options.host, cloud.broker_port, cloud.ws_broker_port, cloud.broker_host
        )
        with background.serving(managed(), asdict(state)):
            listening = (
                f"Local cloud: MQTT over TLS on {cloud.broker_host}:{state.port}, "
                f"WebSocket over TLS on port {state.ws_port}"
            )
            print(listening, flush=True)
            log.info("%s (process %d)", listening, state.pid)
            while not stopped.wait(0.5):  # a timeout: on Windows a bare wait() ignores Ctrl+C
                pass


def start_service(
    options: LocalOptions | None = None,
    timeout: float = 30.0,
    progress: Callable[[str], None] = lambda _: None,
) -> ServiceState:
    """Start the broker as a background process that outlives this one (or find it running).

    Two starts at once (two notebooks, two terminals) take turns: the second waits for the
    first, saying so through `progress`, and then finds the service it started.
    """
    running = service_state()
    if running is not None:
        return running
    private_dir(cloud_dir())
    starting = cloud_dir() / "starting.lock"
    lock = locks.hold_lock(starting)
    if lock is None:
        other = locks.read_pid(starting)
        progress(
            f"Another start of the local cloud is under way (process {other or 'unknown'}); "
            "waiting for it."
        )
        lock = locks.hold_lock(starting, wait=timeout + 5)
        if lock is None:
            raise CloudError(
                f"Another start of the local cloud (process {other or 'unknown'}) has not "
                f"finished in {timeout:.0f} s. Try again in a minute, or see "
                f"{managed().log} and {log_file()}."
            )
    with lock:
        locks.write_pid(lock)
        running = service_state()
        if running is not None:
            return running  # the other start got there first
        return _spawn_service(options or LocalOptions(), timeout)


def _spawn_service(options: LocalOptions, timeout: float) -> ServiceState:
    """Run `python -m kit.cloud.service` in the background and wait until it serves."""
    check_ports_free(options.host, options.listening_ports)
    # The service's own entry point: a background process never runs through the CLI.
    command = [sys.executable, "-m", "kit.cloud.service", *options.command_line()]
    background.launch(
        managed(),
        command,
        timeout,
        lambda reason: CloudError(f"The local cloud did not start: {reason}"),
    )
    state = service_state()
    if state is None:
        raise CloudError(
            f"The local cloud started but left no usable state; see {managed().log} and "
            f"{log_file()}."
        )
    return state


def stop_service(timeout: float = 30.0) -> bool:
    """Stop the background broker; return whether one was running."""
    return background.stop(managed(), timeout)


def require_service() -> ServiceState:
    state = service_state()
    if state is None:
        raise BrokerNotRunningError(
            "The local cloud is not running. Start it: course.start() in notebook 00, or "
            "`kit cloud up` in a terminal."
        )
    return state


def argument_parser() -> arguments.Parser:
    """The service's command line: every field of `LocalOptions` (`command_line()` writes it)."""
    parser = arguments.Parser(prog="python -m kit.cloud.service", description=__doc__)
    local_options.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the local cloud in the foreground; a KitError is one line on stderr."""
    parser = argument_parser()
    try:
        args = parser.parse_args(argv)
        run_service(local_options.from_arguments(args))
    except KitError as error:
        print(f"{error.title}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
