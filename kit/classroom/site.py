"""The class site: log in, Register Thing, My devices, and the instructor's class page.

Server-rendered pages (Jinja2, autoescaped) whose forms work without JavaScript; the little
JavaScript there is (a copy button) ships in the package. Every registration goes to the class's
cloud (any kit.cloud.Cloud); this site only says whose each thing is (kit.classroom.store).

Security, as a classroom network needs it:
- a session cookie holding only a random id (HttpOnly, SameSite=Lax, Secure over HTTPS; a new id
  at every login, so a planted id is worthless), kept hashed in the store;
- a CSRF token on every form (the session's; the login form's in a cookie of its own);
- a student reaches only their own devices: every URL with a thing in it checks the owner;
- request bodies are limited (a CSR is a few hundred bytes; a paste with a serial log a few KB).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kit import certs, config_h
from kit.classroom import passwords
from kit.classroom.store import ClassStore, Session
from kit.cloud import Cloud, Registration
from kit.errors import KitError, ThingTakenError
from kit.printable import printable

HERE = Path(__file__).parent
MAX_BODY = 256 * 1024
MAX_DEVICES = 5  # per student: enough for a spare board, too few to squat the room's names
WIFI_NAME, WIFI_PASSWORD = "YOUR-WIFI-NAME", "YOUR-WIFI-PASSWORD"  # marked placeholders
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class SiteOptions:
    """How the site is reached: its address (for messages) and whether over HTTPS."""

    address: str
    https: bool = True


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413), counted as they arrive."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_much = PlainTextResponse("That is too much to send at once.", 413)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_much(scope, receive, send)
            return
        seen = 0
        over = False

        async def counted() -> dict[str, Any]:
            nonlocal seen, over
            message: dict[str, Any] = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                over = True
                raise TooLarge
            return message

        async def unless_over(message: dict[str, Any]) -> None:
            # A body sent without a length (chunked) is only found too large while the app
            # reads it, and FastAPI answers a failed form read with 400: say 413 instead.
            if not over:
                await send(message)

        try:
            await self.app(scope, counted, unless_over)
        except TooLarge:
            pass
        if over:
            await too_much(scope, receive, send)


class TooLarge(Exception):
    """A request body grew over the limit while it arrived."""


def create_app(store: ClassStore, cloud: Cloud, options: SiteOptions) -> FastAPI:
    """The class site for `store`'s class, registering in `cloud`."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["seen"] = _seen
    cookie = "__Host-kit_session" if options.https else "kit_session"
    login_cookie = "__Host-kit_login" if options.https else "kit_login"

    @app.middleware("http")
    async def hardened(request: Request, call_next: Any) -> Response:
        """Headers that keep the pages out of frames and their content from being guessed."""
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    registering = threading.Lock()  # one registration at a time checks and claims a name

    def page(request: Request, name: str, session: Session | None, **context: Any) -> Response:
        status = context.pop("status", 200)
        return templates.TemplateResponse(
            request,
            name,
            {"session": session, "address": options.address, **context},
            status_code=status,
        )

    def current(request: Request) -> Session | None:
        session_id = request.cookies.get(cookie, "")
        return store.session(session_id) if session_id else None

    def checked(request: Request, csrf: str) -> Session | None:
        """The session of a form post whose CSRF token is right, else None."""
        session = current(request)
        if session is None or not _same(session.csrf, csrf):
            return None
        return session

    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    def refused() -> Response:
        return PlainTextResponse(
            "This form is out of date or not yours. Go back, reload the page and try again.", 403
        )

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login()
        where = "/class" if session.account.role == "instructor" else "/devices"
        return RedirectResponse(where, status_code=303)

    # Logging in and out

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        response = page(request, "login.html", None, login_csrf=token, message="")
        response.set_cookie(
            login_cookie, token, httponly=True, samesite="strict", secure=options.https, path="/"
        )
        return response

    @app.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        login_csrf: Annotated[str, Form()] = "",
    ) -> Response:
        expected = request.cookies.get(login_cookie, "")
        if not expected or not _same(expected, login_csrf):
            return refused()
        username = username.strip().lower()[:64]
        client = request.client.host if request.client else "?"
        wait = passwords.wait_before_next_try(store, username, client, time.time())
        if wait > 0:
            message = f"Too many wrong passwords: wait {wait:.0f} s, then try again."
            return page(
                request, "login.html", None, login_csrf=expected, message=message, status=429
            )
        try:
            right = passwords.check_login(store, username, password[:256], client)
        except passwords.Busy:
            message = "Many people are logging in right now: try again in a few seconds."
            return page(
                request, "login.html", None, login_csrf=expected, message=message, status=503
            )
        if not right:
            message = "That username and password do not match. Check the card from your teacher."
            return page(
                request, "login.html", None, login_csrf=expected, message=message, status=401
            )
        session_id = secrets.token_urlsafe(32)  # always new: a planted id is never adopted
        store.start_session(username, session_id, secrets.token_urlsafe(32))
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            cookie, session_id, httponly=True, samesite="lax", secure=options.https, path="/"
        )
        response.delete_cookie(login_cookie, path="/", secure=options.https, httponly=True)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        session = checked(request, csrf)
        if session is None:
            return refused()
        store.end_session(request.cookies[cookie])
        response = to_login()
        response.delete_cookie(cookie, path="/", secure=options.https, httponly=True)
        return response

    # Register Thing

    @app.get("/register", response_class=HTMLResponse)
    def register_form(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login()
        return page(request, "register.html", session, pasted="", slot=0, problem="", done=None)

    @app.post("/register", response_class=HTMLResponse)
    def register(
        request: Request,
        csrf: Annotated[str, Form()] = "",
        csr: Annotated[str, Form()] = "",
        slot: Annotated[str, Form()] = "0",
        csr_file: Annotated[UploadFile | None, File()] = None,
    ) -> Response:
        session = checked(request, csrf)
        if session is None:
            return refused()
        text = csr
        if csr_file is not None and csr_file.filename:
            text = csr_file.file.read(64 * 1024 + 1).decode("utf-8", errors="replace")
        username = session.account.username
        store.csr_received(username)

        def again(problem: str) -> Response:
            return page(
                request,
                "register.html",
                session,
                pasted=text,
                slot=slot,
                problem=problem,
                done=None,
                status=400,
            )

        if slot not in ("0", "1", "2", "3", "4"):
            return again("The key slot is a number from 0 to 4 (the one the CSR sketch used).")
        try:
            request_csr = certs.load_csr(text)
        except KitError as error:
            return again(str(error))
        thing = request_csr.common_name
        with registering:
            owner = store.owner(thing)
            if owner is not None and owner != username:
                return again(
                    f"The device name '{printable(thing)}' is taken by another student in this "
                    "class. Capture a new CSR with another name (notebook 01, or the CSR "
                    "sketch's name question)."
                )
            if owner is None and len(store.things_of(username)) >= MAX_DEVICES:
                return again(
                    f"You have {MAX_DEVICES} devices registered already, the most a student "
                    "may have: remove one on My devices first."
                )
            try:
                registration = cloud.register(request_csr)
            except ThingTakenError:
                return again(
                    f"'{printable(thing)}' is already registered with another key. If it is "
                    "yours, remove it on My devices and register again."
                )
            except KitError as error:
                return again(str(error))
            if owner is None and not registration.created:
                # The cloud had it before this class did (a CSR is no secret: anyone may have
                # a copy), so nobody here may take it over.
                return again(
                    f"'{printable(thing)}' was registered in the cloud outside this class. Ask "
                    "your teacher, or capture a CSR with another device name."
                )
            store.claim(thing, username)
            store.keep_registration(thing, registration, int(slot))
        done = _ready(registration, int(slot))
        return page(request, "register.html", session, pasted="", slot=slot, problem="", done=done)

    # My devices

    def own(session: Session, thing: str) -> tuple[Registration, int] | None:
        """The registration of `thing` and its key slot if this person may see it (theirs, or
        the instructor's class)."""
        owner = store.owner(thing)
        if owner is None or (owner != session.account.username and not _teaches(session)):
            return None
        return store.registration(thing)

    @app.get("/devices", response_class=HTMLResponse)
    def devices(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login()
        rows = [_row(cloud, thing) for thing in store.things_of(session.account.username)]
        return page(request, "devices.html", session, rows=rows)

    @app.get("/devices/{thing}/{name}")
    def download(request: Request, thing: str, name: str) -> Response:
        session = current(request)
        if session is None:
            return to_login()
        found = own(session, thing)
        if found is None or name not in ("certificate.pem", "config.h", "ca.pem"):
            return PlainTextResponse("There is no such file of yours.", 404)
        registration, slot = found
        files = {
            "certificate.pem": registration.certificate_pem,
            "ca.pem": registration.ca_pem,
            "config.h": _ready(registration, slot).config_h,
        }
        return Response(
            files[name],
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.post("/devices/{thing}/remove")
    def remove(request: Request, thing: str, csrf: Annotated[str, Form()] = "") -> Response:
        session = checked(request, csrf)
        if session is None:
            return refused()
        owner = store.owner(thing)
        if owner is None or (owner != session.account.username and not _teaches(session)):
            return PlainTextResponse("There is no such device of yours.", 404)
        cloud.unregister(thing)
        store.release(thing)
        return RedirectResponse("/class" if _teaches(session) else "/devices", status_code=303)

    # The instructor

    @app.get("/class", response_class=HTMLResponse)
    def whole_class(request: Request) -> Response:
        session = current(request)
        if session is None:
            return to_login()
        if not _teaches(session):
            return PlainTextResponse("This page is the instructor's.", 403)
        received = store.csr_received_at()
        owners: dict[str, list[str]] = {}
        for thing, owner in sorted(store.all_things().items()):
            owners.setdefault(owner, []).append(thing)
        students = [
            {
                "account": account,
                "csr": received.get(account.username),
                "devices": [_row(cloud, thing) for thing in owners.get(account.username, [])],
            }
            for account in store.accounts()
            if account.role == "student"
        ]
        return page(request, "class.html", session, students=students)

    @app.post("/class/teardown")
    def teardown(
        request: Request, csrf: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = ""
    ) -> Response:
        session = checked(request, csrf)
        if session is None or not _teaches(session):
            return refused()
        if confirm.strip() != "remove every device":
            return PlainTextResponse(
                "Nothing was removed: type 'remove every device' to confirm.", 400
            )
        for thing in store.all_things():
            cloud.unregister(thing)
            store.release(thing)
        return RedirectResponse("/class", status_code=303)

    return app


def _same(expected: str, given: str) -> bool:
    """A token comparison in constant time (as bytes: any text a request carries is allowed)."""
    return secrets.compare_digest(expected.encode(), given.encode())


def _seen(moment: float) -> str:
    """A time as the page shows it: HH:MM:SS today, else the date too."""
    shown = time.localtime(moment)
    today = time.localtime()
    same_day = shown[:3] == today[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M", shown)


def _teaches(session: Session) -> bool:
    return session.account.role == "instructor"


@dataclass(frozen=True)
class Ready:
    """What a student takes away from registering: the certificate and a ready config.h."""

    registration: Registration
    config_h: str


def _ready(registration: Registration, slot: int) -> Ready:
    """The registration with a config.h holding everything but the WiFi name and password."""
    local_ca = registration.ca_pem if registration.cloud == "local" else ""
    rendered = config_h.render(
        WIFI_NAME,
        WIFI_PASSWORD,
        registration.broker_host,
        registration.certificate_pem,
        port=registration.broker_port,
        slot=slot,
        local_ca=local_ca,
    )
    return Ready(registration, rendered.text)


def _row(cloud: Cloud, thing: str) -> dict[str, Any]:
    """A device's line on My devices and the class page: connected now, last seen."""
    try:
        presence = cloud.presence(thing)
    except KitError:
        return {"thing": thing, "connected": None, "last_seen": None}
    return {"thing": thing, "connected": presence.connected, "last_seen": presence.last_seen}
