"""The class's steps for the instructor: create it, add the roster, serve the site, tear down.

`kit class …` calls these and only prints. The class lives in one folder (KIT_HOME/class by
default): the store, the site's web certificate and key, and the handouts, all private.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kit.classroom import passwords, roster, web_certificate
from kit.classroom.ownership import remove_devices
from kit.classroom.store import Account, ClassStore, open_store
from kit.cloud import Cloud
from kit.cloud.local_broker import host_names, local_name
from kit.environment import Environment
from kit.errors import ClassError, UsageError
from kit.places import kit_home
from kit.ports import listen_on

INSTRUCTOR = "instructor"
SITE_PORT = 8443
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# Who may hold the site's port, and what to do (the instructor's notebook reads KIT_CLASS_PORT).
SITE_PORT_HOLDER = "the class site running already, or another web server?"
SITE_PORT_FIX = (
    "Stop that program (`kit class serve` runs one site per computer), or choose another port "
    "with --port (KIT_CLASS_PORT for the instructor's notebook)."
)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
# macOS's OPEN_MAX: it refuses a soft limit on open files above this (RLIM_INFINITY included).
DARWIN_OPEN_MAX = 10240


def class_folder() -> Path:
    """Where the class lives unless told otherwise."""
    return kit_home() / "class"


def default_host() -> str:
    """The name students' laptops reach this computer by on the LAN (mDNS)."""
    return local_name().name


def site_address(host: str, port: int) -> str:
    """The address students type: HTTPS on `host`, the port left out when it is 443."""
    return f"https://{host}:{port}/" if port != 443 else f"https://{host}/"


@dataclass(frozen=True)
class Created:
    """A new class: its address, the site certificate's fingerprint, the instructor's login."""

    address: str
    fingerprint: str
    username: str
    password: str  # shown once, never stored


def init(
    folder: Path,
    host: str,
    port: int = SITE_PORT,
    cloud: str = "local",
    profile: str = "",
    region: str = "",
) -> Created:
    """Create the class: its store, its web certificate, its cloud (local, or AWS with this
    profile and region) and the instructor's account."""
    if (folder / "class.db").exists():
        raise ClassError(
            f"There is a class in {folder} already: `kit class roster list` shows it. To start "
            f"another, end this one (`kit class teardown --accounts --yes`), then move {folder} "
            "away, or give the new class a folder of its own (--folder)."
        )
    names = list(dict.fromkeys([host, *host_names()]))
    certificate = web_certificate.ensure(folder, names)
    address = site_address(host, port)
    password = passwords.generate()
    with ClassStore(folder / "class.db") as store:
        store.set_fact("address", address)
        store.set_fact("host", host)
        store.set_fact("fingerprint", certificate.fingerprint)
        store.set_fact("web_names", " ".join(names))
        for key, value in (("cloud", cloud), ("profile", profile), ("region", region)):
            store.set_fact(key, value)
        store.add_account(
            Account(INSTRUCTOR, "Instructor", "instructor"), passwords.hash_password(password)
        )
    return Created(address, certificate.fingerprint, INSTRUCTOR, password)


def open_class_cloud(
    folder: Path, broker_host: str | None = None, env: Environment | None = None
) -> Cloud:
    """The class's cloud: the local cloud serving boards on the LAN (on the ports `env`
    names, if any), or AWS IoT Core with the instructor's credentials."""
    from kit.cloud import open_cloud
    from kit.cloud.options import LocalOptions
    from kit.ports import MQTT_TLS_PORT, WEBSOCKET_TLS_PORT

    env = env or Environment()
    with open_store(folder) as store:
        kind = store.fact("cloud") or "local"
        profile, region = store.fact("profile") or None, store.fact("region") or None
    if kind == "aws":
        return open_cloud("aws", profile=profile, region=region)
    options = LocalOptions(
        host="0.0.0.0",
        port=env.broker_port or MQTT_TLS_PORT,
        ws_port=env.broker_ws_port or WEBSOCKET_TLS_PORT,
        broker_host=broker_host,
    )
    return open_cloud("local", local=options)


def _handout_path(folder: Path, what: str) -> Path:
    return folder / f"handout-{what}-{time.strftime('%Y%m%d-%H%M%S')}.html"


def add_roster(
    folder: Path, csv_file: Path, only_new: bool = False
) -> tuple[list[roster.Card], Path | None]:
    """Accounts for every student of the roster (`only_new`: those without an account of
    that name yet, so a roster can be added again), and the handout with their passwords
    (None when nobody was added)."""
    rows = roster.read(csv_file)
    with open_store(folder) as store:
        if only_new:
            present = {account.name for account in store.accounts()}
            rows = [row for row in rows if row[0] not in present]
        if not rows:
            return [], None
        cards = roster.add(store, rows)
        address, fingerprint = store.fact("address") or "", store.fact("fingerprint") or ""
    handout = roster.handout(cards, address, fingerprint, _handout_path(folder, "roster"))
    return cards, handout


def reset_password(folder: Path, username: str) -> Path:
    """A new password for one person (their sessions end), on a one-card handout."""
    with open_store(folder) as store:
        account = store.account(username)
        if account is None:
            raise ClassError(f"There is no account called '{username}'.")
        password = passwords.generate()
        store.set_password_hash(username, passwords.hash_password(password))
        address, fingerprint = store.fact("address") or "", store.fact("fingerprint") or ""
    card = roster.Card(account.name, username, password)
    return roster.handout([card], address, fingerprint, _handout_path(folder, username))


def revoke(folder: Path, username: str) -> int:
    """End a person's notebook tokens and browser sessions, and their logins being checked
    (a lost laptop); return how many tokens there were. Their password stays."""
    with open_store(folder) as store:
        return store.revoke(username)


def remove(folder: Path, username: str, cloud: Cloud) -> list[str]:
    """Remove a person: their devices from the cloud first, then their account."""
    with open_store(folder) as store:
        if username == INSTRUCTOR:
            raise ClassError("The instructor's account stays: `kit class teardown` ends a class.")
        if store.account(username) is None:
            raise ClassError(f"There is no account called '{username}'.")
        removed = remove_devices(store, cloud, store.things_of(username))
        store.remove_account(username)
        return removed


def teardown(folder: Path, cloud: Cloud, accounts: bool = False) -> list[str]:
    """Stop the class's virtual boards and remove every device the class registered, in the
    cloud too; with `accounts`, the students' accounts as well. Returns the devices removed."""
    from kit.classroom import provision  # the virtual boards' side: loaded only here

    provision.remove_boards(folder)
    with open_store(folder) as store:
        removed = remove_devices(store, cloud, sorted(store.all_things()))
        if accounts:
            for account in store.accounts():
                if account.role == "student":
                    store.remove_account(account.username)
    return removed


def web_identity(folder: Path) -> tuple[web_certificate.WebCertificate, bool]:
    """The site's web certificate for the class's host names, and whether it is new since
    the handouts were printed (made again when missing or running out)."""
    with open_store(folder) as store:
        names = (store.fact("web_names") or store.fact("host") or default_host()).split()
        certificate = web_certificate.ensure(folder, names)
        renewed = store.fact("fingerprint") != certificate.fingerprint
        if renewed:
            store.set_fact("fingerprint", certificate.fingerprint)
    return certificate, renewed


def check_listening(listen: str, http: bool, proxy_headers: bool = False) -> None:
    """Plain HTTP only on this computer: passwords must never cross the room unencrypted; and
    a client's forwarded address only from a proxy on this computer."""
    if proxy_headers and not (http and listen in LOOPBACK):
        raise UsageError(
            "--proxy-headers is only for running behind a reverse proxy on this computer: use "
            "it with --http --listen 127.0.0.1 (see the README). Without a proxy in front, "
            "anyone could claim any address and slip past the wrong-password backoff."
        )
    if http and listen not in LOOPBACK:
        raise UsageError(
            "--http is allowed only with --listen 127.0.0.1: on the network, passwords would "
            "cross the room unencrypted. Leave --http out (the site has its own certificate), "
            "or put it behind a reverse proxy with a real one (see the README)."
        )


def site_sockets(listen: str, port: int) -> list[socket.socket]:
    """The site's listening sockets, taken now: PortInUseError if another program has the
    port (a second site, whatever the system, stops with the kit's message)."""
    return listen_on(listen, port, holder=SITE_PORT_HOLDER, fix=SITE_PORT_FIX)


def serve(
    folder: Path,
    cloud: Cloud,
    *,
    listen: str,
    port: int,
    http: bool = False,
    proxy_headers: bool = False,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Run the class site and its live feed until Ctrl+C (HTTPS with the class's web
    certificate), on `sockets` (from `site_sockets`) or on the port taken here."""
    import uvicorn

    from kit.classroom.guards import GuardedH11
    from kit.classroom.live import ClassFeed
    from kit.classroom.site import SiteOptions, create_app

    check_listening(listen, http, proxy_headers)
    # uvicorn would bind with SO_REUSEADDR (on Windows a second site would start beside the
    # first) and only log a refusal: the kit takes the port itself and hands uvicorn the socket.
    taken = sockets if sockets is not None else site_sockets(listen, port)
    try:
        _more_open_files()  # before the site counts how many live pages it can hold
        _give_back_buffers()
        store = open_store(folder)
    except BaseException:
        for sock in taken:
            sock.close()
        raise
    try:
        # The address students use: the class's host on the port served (a proxy keeps init's).
        address = site_address(store.fact("host") or default_host(), port)
        if http:
            proxied = store.fact("address") or address
            address = proxied if proxy_headers else f"http://127.0.0.1:{port}/"
        # Behind a proxy that terminates HTTPS, the browser still speaks HTTPS: Secure cookies.
        # The Host header may name only the class's own names (and this computer's loopback).
        names = (store.fact("web_names") or store.fact("host") or "").split()
        hosts = tuple(dict.fromkeys([urlsplit(address).hostname or "", *names]))
        options = SiteOptions(address, https=not http or proxy_headers, hosts=hosts)
        # One observer for the class: live pages follow it, and on AWS it records presence.
        app = create_app(store, cloud, options, ClassFeed(cloud))
        tls = {}
        if not http:
            certificate, _ = web_identity(folder)
            tls = {
                "ssl_certfile": str(certificate.certificate),
                "ssl_keyfile": str(certificate.key),
            }
        config = uvicorn.Config(
            app,
            host=listen,
            port=port,
            # uvicorn's HTTP/1.1 with a time limit for a request to arrive and a share of
            # connections per address (kit.classroom.guards): half-sent requests end.
            http=GuardedH11,
            proxy_headers=proxy_headers,
            # Open live pages never end by themselves: Ctrl+C closes them after 3 s.
            timeout_graceful_shutdown=3,
            # Only the proxy on this computer may say who the client is (the backoff uses it).
            forwarded_allow_ips="127.0.0.1" if proxy_headers else None,
            log_level="warning",
            **tls,  # type: ignore[arg-type]
        )
        # uvicorn.run catches the Ctrl+C its Server raises again once it has shut down; so do we.
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=taken)
    finally:
        store.close()
        for sock in taken:
            sock.close()


def open_files_goal(platform: str, soft: int, hard: int, unlimited: int) -> int:
    """The soft limit on open files to ask for, given the (soft, hard) limits now (`unlimited`:
    the system's RLIM_INFINITY); `soft` itself when there is nothing to raise."""
    if soft == unlimited:
        return soft
    if platform == "darwin":
        # macOS often says its hard limit is unlimited, yet refuses a soft limit above
        # OPEN_MAX: asking for the hard limit would fail and leave 256 (50 live pages).
        return max(soft, DARWIN_OPEN_MAX if hard == unlimited else min(hard, DARWIN_OPEN_MAX))
    # Linux's hard limit is a number (at most fs.nr_open) that the process may take whole.
    return max(soft, hard)


def _give_back_buffers() -> None:
    """Have glibc give the memory of a closed connection back to the system at once.

    Each TLS connection holds a 256 KB read buffer (asyncio's SSLProtocol). glibc serves
    blocks that large with mmap, but after the first is freed it raises that threshold and
    serves the next ones from the heap, which it rarely shrinks: 2,000 slow clients closed
    left the site 540 MB larger for good. A fixed threshold keeps them mmapped (mallopt
    M_MMAP_THRESHOLD; other systems' allocators give such blocks back by themselves).
    """
    # A block of its own, not an early return: mypy then checks it as Linux's code only.
    if sys.platform == "linux":
        import ctypes
        import ctypes.util

        with contextlib.suppress(OSError, AttributeError):  # musl, or no C library found
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)


def _more_open_files() -> None:
    """Raise this process's limit on open files to the most it may have: every open live page
    holds a connection (the usual 1024 is a few pages per student in a room of 300)."""
    # Windows has no such limit on sockets (see kit.classroom.streams.live_page_budget), nor a
    # `resource` module; a block of its own, so mypy checks it as each system's code.
    if sys.platform != "win32":
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        goal = open_files_goal(sys.platform, soft, hard, resource.RLIM_INFINITY)
        if goal != soft:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (goal, hard))
