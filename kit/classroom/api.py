"""The class server's JSON API for the notebooks (kit.cloud.class_cloud.ClassCloud).

A notebook exchanges the student's username and password once for a bearer token (kept hashed
in the class store, ended by the instructor, a new password or the account's removal), then
registers CSRs, lists, watches and commands the student's own devices, and nothing else: every
route with a device in it asks kit.classroom.ownership first and answers 404 for anyone else's.
FastAPI describes it all at /api/openapi.json. (No `from __future__ import annotations`:
FastAPI reads the routes' annotations at run time, and `Person` is local to create_api.)
"""

import base64
import math
import secrets
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kit import certs
from kit.classroom import passwords
from kit.classroom.guards import LED_RATE
from kit.classroom.live import EVERY, HISTORY_ROWS, READING_BYTES, Watched
from kit.classroom.ownership import may_see, presence_since
from kit.classroom.pages import Pages
from kit.classroom.store import Account, session_key, token_id
from kit.classroom.streams import Live, number
from kit.errors import KitError

HISTORY_LIMIT = HISTORY_ROWS


class TokenRequest(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class Token(BaseModel):
    token: str
    username: str
    expires: float  # Unix time


class TokenOut(BaseModel):
    id: str = Field(description="a short id naming the token (never the token itself)")
    created: float  # Unix time
    expires: float
    current: bool = Field(description="the token this request came with")


class CsrUpload(BaseModel):
    csr: str = Field(max_length=64 * 1024, description="the CSR as pasted or captured")
    slot: int = Field(0, ge=0, le=4, description="the chip's key slot the CSR sketch used")


class RegistrationOut(BaseModel):
    thing: str
    certificate_pem: str
    certificate_id: str
    broker_host: str
    broker_port: int
    ca_pem: str
    cloud: str
    created: bool


class ThingOut(BaseModel):
    thing: str
    connected: bool | None
    last_seen: float | None


class PresenceOut(BaseModel):
    thing: str
    connected: bool | None
    changed: float | None
    last_message: float | None


class MessageOut(BaseModel):
    topic: str
    payload: str = Field(description="the payload's bytes, base64")
    received: float


class LedCommand(BaseModel):
    value: int = Field(ge=0, le=100)


class Problem(BaseModel):
    detail: str


NOT_YOURS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "not a device of yours"}
}


def create_api(pages: Pages, live: Live) -> FastAPI:
    """The API application, mounted at /api by the class site."""
    store, cloud = pages.store, pages.cloud
    api = FastAPI(
        title="IoT course class server",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        responses={401: {"model": Problem, "description": "no token, or not a live one"}},
    )
    bearer = HTTPBearer(auto_error=False)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        """What was wrong, never what was sent: it may hold a password, or characters no
        JSON can carry back (FastAPI's own answer echoed them, and failed with 500)."""
        detail = [
            {"loc": [str(part) for part in problem.get("loc", ())], "msg": problem.get("msg", "")}
            for problem in error.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    def person(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Account:
        account = store.token_account(credentials.credentials) if credentials else None
        # Kept for the live stream, which asks again while it runs whether the token is live.
        request.state.token = credentials.credentials if credentials else ""
        if account is None:
            raise HTTPException(
                401,
                "No live token: run course.use(cloud='class', ...) again to log in.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return account

    Person = Annotated[Account, Depends(person)]

    def mine(account: Account, thing: str) -> None:
        if not may_see(store, account, thing):
            raise HTTPException(404, "There is no such device of yours.")

    @api.post(
        "/token",
        response_model=Token,
        responses={429: {"model": Problem}, 503: {"model": Problem}},
    )
    async def token(request: Request, asked: TokenRequest) -> Token | JSONResponse:
        """A token for this student's notebooks, for their username and password (their
        oldest beyond five ends)."""
        username = asked.username.strip().lower()
        client = request.client.host if request.client else "?"
        try:
            # Async: argon2 runs on its own threads, and no web worker waits for it.
            answer = await passwords.log_in(store, username, asked.password, client)
        except passwords.Busy:
            return _problem(503, "Many people are logging in right now: try again soon.", 2)
        if answer.wait > 0:
            wait = max(1, math.ceil(answer.wait))
            return _problem(429, f"Too many wrong passwords: wait {wait} s.", wait)
        if not answer.right or answer.credentials is None:
            return _problem(401, "That username and password do not match your card.")
        issued = secrets.token_urlsafe(32)
        expires = await run_in_threadpool(store.issue_token, username, issued, answer.credentials)
        if expires is None:
            return _problem(401, "Your password changed just now: log in with the new one.")
        return Token(token=issued, username=username, expires=expires)

    @api.delete("/token", status_code=204)
    def log_out(request: Request, account: Person) -> Response:
        """End the token this request came with (logging this notebook out)."""
        store.end_token(account.username, request.state.token)
        return Response(status_code=204)

    @api.get("/tokens", response_model=list[TokenOut])
    def tokens(request: Request, account: Person) -> list[TokenOut]:
        """The person's live notebook tokens, newest first."""
        current = token_id(session_key(request.state.token))
        return [
            TokenOut(id=t.id, created=t.created, expires=t.expires, current=t.id == current)
            for t in store.tokens_of(account.username)
        ]

    @api.delete("/tokens", status_code=204)
    def end_tokens(account: Person) -> Response:
        """End every notebook token of the person, this one too (every computer logs out)."""
        store.revoke_tokens(account.username)
        return Response(status_code=204)

    @api.delete("/tokens/{token}", status_code=204, responses={404: {"model": Problem}})
    def end_token(account: Person, token: str) -> Response:
        """End one of the person's tokens, by its id (a laptop they no longer use)."""
        if not store.end_token(account.username, token[:64]):
            raise HTTPException(404, "There is no such token of yours.")
        return Response(status_code=204)

    @api.get("/things", response_model=list[ThingOut])
    def things(account: Person) -> list[ThingOut]:
        """The student's devices, with whether each is connected now."""
        found = []
        for thing in store.things_of(account.username):
            presence = presence_since(store, cloud, thing)
            found.append(
                ThingOut(thing=thing, connected=presence.connected, last_seen=presence.last_seen)
            )
        return found

    @api.post(
        "/things",
        response_model=RegistrationOut,
        status_code=201,
        responses={400: {"model": Problem}, 409: {"model": Problem}},
    )
    def register(account: Person, upload: CsrUpload) -> RegistrationOut | JSONResponse:
        """Register a CSR: the certificate and the broker the board needs."""
        try:
            csr = certs.load_csr(upload.csr)
        except KitError as error:
            return _problem(400, str(error))
        outcome = pages.registrar.register(account.username, csr, upload.slot)
        if outcome.registration is None:
            # 409: the cloud holds this name with another key (remove it, then register).
            return _problem(409 if outcome.conflict else 400, outcome.problem)
        return RegistrationOut(**outcome.registration.__dict__)

    @api.delete("/things/{thing}", status_code=204, responses=NOT_YOURS)
    def remove(account: Person, thing: str) -> Response:
        """Remove a device: its certificate stops working."""
        mine(account, thing)
        pages.remove_devices([thing])
        return Response(status_code=204)

    @api.get("/things/{thing}/presence", response_model=PresenceOut, responses=NOT_YOURS)
    def presence(account: Person, thing: str) -> PresenceOut:
        """Whether the device is connected now, and when it was last seen."""
        mine(account, thing)
        found = presence_since(store, cloud, thing)
        return PresenceOut(
            thing=thing,
            connected=found.connected,
            changed=found.changed,
            last_message=found.last_message,
        )

    @api.get("/things/{thing}/history", response_model=list[MessageOut], responses=NOT_YOURS)
    def history(
        account: Person,
        thing: str,
        since: float | None = None,
        until: float | None = None,
        latest: Annotated[int | None, Query(ge=1, le=HISTORY_LIMIT)] = None,
        topic_suffix: Annotated[str | None, Query(max_length=32)] = None,
    ) -> list[MessageOut]:
        """What was recorded of the device since it became the student's (oldest first)."""
        mine(account, thing)
        registered = store.registered_at(thing) or time.time()
        messages = cloud.history(
            thing,
            since=max(since or 0.0, registered),
            until=until,
            latest=min(latest or HISTORY_LIMIT, HISTORY_LIMIT),
            max_bytes=READING_BYTES,
            topic_suffix=topic_suffix,
        )
        return [
            MessageOut(
                topic=m.topic, payload=base64.b64encode(m.payload).decode(), received=m.received
            )
            for m in messages
        ]

    @api.get(
        "/things/{thing}/events",
        responses={
            **NOT_YOURS,
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
            429: {"model": Problem},
        },
    )
    async def events(
        request: Request,
        account: Person,
        thing: str,
        after: int | None = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """The device's live events (readings, LED states, connections) after `after` (left
        out: from now on); `*` for all of the student's devices."""
        teacher = account.role == "instructor"
        watched: Watched = thing
        if thing == EVERY and not teacher:
            # A student's `*`: their devices as they are now (a reconnection sees new ones).
            watched = tuple(store.things_of(account.username))
        elif thing != EVERY:
            mine(account, thing)
        if last_event_id is not None:
            after = number(last_event_id) or 0
        start = live.feed.last_id if after is None else after
        token = request.state.token

        def still_allowed() -> bool:
            return store.token_account(token) is not None

        return live.stream(
            account.username, watched, start, everything=teacher, still_allowed=still_allowed
        )

    @api.post(
        "/things/{thing}/led",
        status_code=202,
        responses={**NOT_YOURS, 400: {"model": Problem}, 429: {"model": Problem}},
    )
    def led(account: Person, thing: str, command: LedCommand) -> dict[str, str]:
        """Ask the device to set its LED (0-100 %); its answer arrives as an `led` event. At
        most 5 a second for all of a person's devices (the class shares one connection)."""
        mine(account, thing)
        wait = pages.led_rate.take(account.username)
        if wait > 0:
            raise HTTPException(
                429,
                f"Too many LED commands: at most {LED_RATE:.0f} a second for all your "
                "devices (a board shows no more anyway). Send the next one in "
                f"{wait:.1f} s.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        problem = live.led(thing, str(command.value))
        if problem:
            raise HTTPException(400, problem)
        return {"sent": str(command.value)}

    return api


def _problem(status: int, detail: str, retry_after: int = 0) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
