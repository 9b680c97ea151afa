"""The class site: log in, Register Thing, My devices, and the instructor's class page.

Server-rendered pages (Jinja2, autoescaped) whose forms work without JavaScript; the little
JavaScript there is ships in the package. Every registration goes to the class's cloud (any
kit.cloud.Cloud); this site only says whose each thing is (kit.classroom.store). What every
page shares (sessions, CSRF) is in kit.classroom.pages; the live dashboard's routes in
kit.classroom.dashboard; the size limit and headers in kit.classroom.guards.

A student reaches only their own devices: every URL with a thing in it asks
kit.classroom.ownership.may_see first.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from kit import certs, config_h
from kit.classroom import api, dashboard, ownership, passwords, streams
from kit.classroom.guards import guard, same
from kit.classroom.live import ClassFeed
from kit.classroom.ownership import may_see, teaches
from kit.classroom.pages import HERE, Pages, SiteOptions
from kit.classroom.store import ClassStore
from kit.cloud import Cloud, Registration
from kit.errors import KitError

__all__ = ["SiteOptions", "create_app"]

WIFI_NAME, WIFI_PASSWORD = "YOUR-WIFI-NAME", "YOUR-WIFI-PASSWORD"  # marked placeholders
BUSY = "Many people are logging in right now: try again in a few seconds."
CHANGED = "Your password changed just now: log in with the new one from your teacher."


def create_app(
    store: ClassStore, cloud: Cloud, options: SiteOptions, feed: ClassFeed | None = None
) -> FastAPI:
    """The class site for `store`'s class, registering in `cloud`; live pages from `feed`,
    which the site starts and stops with itself (the observer records presence on AWS)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if feed is not None:
            await asyncio.to_thread(feed.start, asyncio.get_running_loop())
        try:
            yield
        finally:
            if feed is not None:
                feed.stop()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    guard(app, options.host_names())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    pages = Pages(store, cloud, options)
    _accounts(app, pages)
    _registering(app, pages)
    _devices(app, pages)
    _instructor(app, pages)
    if feed is not None:
        live = streams.Live(pages, feed)
        dashboard.add_routes(app, pages, live)
        dashboard.add_instructor_routes(app, pages, live)
        app.mount("/api", api.create_api(pages, live))
    return app


def _accounts(app: FastAPI, pages: Pages) -> None:
    """Logging in and out."""
    store, https = pages.store, pages.options.https

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        session = pages.current(request)
        if session is None:
            return pages.to_login()
        return RedirectResponse("/class" if teaches(session) else "/devices", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        response = pages.page(request, "login.html", None, login_csrf=token, message="")
        response.set_cookie(
            pages.login_cookie, token, httponly=True, samesite="strict", secure=https, path="/"
        )
        return response

    @app.post("/login", response_class=HTMLResponse)
    async def login(
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        login_csrf: Annotated[str, Form()] = "",
    ) -> Response:
        expected = request.cookies.get(pages.login_cookie, "")
        if not expected or not same(expected, login_csrf):
            return pages.refused()

        def again(message: str, status: int) -> Response:
            return pages.page(
                request, "login.html", None, login_csrf=expected, message=message, status=status
            )

        username = username.strip().lower()[:64]
        client = request.client.host if request.client else "?"
        try:
            # Async: argon2 runs on its own threads, and no web worker waits for it.
            answer = await passwords.log_in(store, username, password[:256], client)
        except passwords.Busy:
            return again(BUSY, 503)
        if answer.wait > 0:
            return again(
                f"Too many wrong passwords: wait {max(1, round(answer.wait))} s, then try again.",
                429,
            )
        if not answer.right or answer.credentials is None:
            return again(
                "That username and password do not match. Check the card from your teacher.", 401
            )
        session_id = secrets.token_urlsafe(32)  # always new: a planted id is never adopted
        started = await run_in_threadpool(
            store.start_session,
            username,
            session_id,
            secrets.token_urlsafe(32),
            answer.credentials,
        )
        if started is None:
            return again(CHANGED, 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            pages.cookie, session_id, httponly=True, samesite="lax", secure=https, path="/"
        )
        response.delete_cookie(pages.login_cookie, path="/", secure=https, httponly=True)
        return response

    @app.post("/logout")
    def logout(
        request: Request,
        csrf: Annotated[str, Form()] = "",
        notebooks: Annotated[str, Form()] = "",
    ) -> Response:
        session = pages.checked(request, csrf)
        if session is None:
            return pages.refused()
        store.end_session(request.cookies[pages.cookie])
        if notebooks:  # "and my notebooks": every token of theirs ends too
            store.revoke_tokens(session.account.username)
        response = pages.to_login()
        response.delete_cookie(pages.cookie, path="/", secure=https, httponly=True)
        return response


def _registering(app: FastAPI, pages: Pages) -> None:
    """Register Thing: a pasted or uploaded CSR becomes a certificate and a ready config.h."""
    store = pages.store

    @app.get("/register", response_class=HTMLResponse)
    def register_form(request: Request) -> Response:
        session = pages.current(request)
        if session is None:
            return pages.to_login()
        return pages.page(request, "register.html", session, pasted="", slot=0, problem="")

    @app.post("/register", response_class=HTMLResponse)
    def register(
        request: Request,
        csrf: Annotated[str, Form()] = "",
        csr: Annotated[str, Form()] = "",
        slot: Annotated[str, Form()] = "0",
        csr_file: Annotated[UploadFile | None, File()] = None,
    ) -> Response:
        session = pages.checked(request, csrf)
        if session is None:
            return pages.refused()
        text = csr
        if csr_file is not None and csr_file.filename:
            text = csr_file.file.read(64 * 1024 + 1).decode("utf-8", errors="replace")
        # Counted before the CSR is checked: the instructor sees who is trying, even in vain.
        store.csr_received(session.account.username)
        if slot not in ("0", "1", "2", "3", "4"):
            problem = "The key slot is a number from 0 to 4 (the one the CSR sketch used)."
        else:
            try:
                request_csr = certs.load_csr(text)
            except KitError as error:
                problem = str(error)
            else:
                outcome = pages.registrar.register(session.account.username, request_csr, int(slot))
                problem, registration = outcome.problem, outcome.registration
                if registration is not None:
                    ready = _ready(registration, int(slot))
                    return pages.page(
                        request, "register.html", session, pasted="", slot=slot, done=ready
                    )
        return pages.page(
            request,
            "register.html",
            session,
            pasted=text,
            slot=slot,
            problem=problem,
            status=400,
        )


def _devices(app: FastAPI, pages: Pages) -> None:
    """My devices: their state, their files again, and removing one."""
    store, cloud = pages.store, pages.cloud

    @app.get("/devices", response_class=HTMLResponse)
    def devices(request: Request) -> Response:
        session = pages.current(request)
        if session is None:
            return pages.to_login()
        rows = [
            ownership.device_row(store, cloud, thing)
            for thing in store.things_of(session.account.username)
        ]
        return pages.page(request, "devices.html", session, rows=rows)

    @app.get("/devices/{thing}/{name}")
    def download(request: Request, thing: str, name: str) -> Response:
        session = pages.current(request)
        if session is None:
            return pages.to_login()
        found = store.registration(thing) if may_see(store, session.account, thing) else None
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
        session = pages.checked(request, csrf)
        if session is None:
            return pages.refused()
        if not may_see(store, session.account, thing):
            return PlainTextResponse("There is no such device of yours.", 404)
        pages.remove_devices([thing])
        return RedirectResponse("/class" if teaches(session) else "/devices", status_code=303)


def _instructor(app: FastAPI, pages: Pages) -> None:
    """The class at a glance, and the end of the course."""
    store, cloud = pages.store, pages.cloud

    def class_rows() -> list[dict[str, Any]]:
        return ownership.class_rows(store, cloud)

    @app.get("/class", response_class=HTMLResponse)
    def whole_class(request: Request) -> Response:
        return pages.for_instructor(request, "class.html", lambda: {"students": class_rows()})

    @app.get("/class/table", response_class=HTMLResponse)
    def class_table(request: Request) -> Response:
        """The class page's table alone: the page fetches it every few seconds."""
        if pages.instructor(request) is None:
            return pages.not_theirs()
        return pages.for_instructor(request, "class_table.html", lambda: {"students": class_rows()})

    @app.post("/class/teardown")
    def teardown(
        request: Request, csrf: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = ""
    ) -> Response:
        session = pages.checked(request, csrf)
        if session is None or not teaches(session):
            return pages.refused()
        if confirm.strip() != "remove every device":
            return PlainTextResponse(
                "Nothing was removed: type 'remove every device' to confirm.", 400
            )
        pages.remove_devices(sorted(store.all_things()))
        return RedirectResponse("/class", status_code=303)


@dataclass(frozen=True)
class Ready:
    """What a student takes away from registering: the registration and a config.h holding
    everything but the WiFi name and password (marked placeholders)."""

    registration: Registration
    config_h: str


def _ready(registration: Registration, slot: int) -> Ready:
    """The registration with its config.h, WiFi name and password left as placeholders."""
    rendered = config_h.for_registration(registration, WIFI_NAME, WIFI_PASSWORD, slot=slot)
    return Ready(registration, rendered.text)
