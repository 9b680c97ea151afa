"""The instructor's class server as a cloud: register, watch and command through it.

In class mode a student's notebooks hold neither cloud credentials nor an observer identity:
they hold a bearer token for the class server's JSON API (kit.classroom.api), got once for the
student's username and password, and the class server's own certificate, pinned at that first
contact after the student compared its fingerprint with the one on their card. Both are kept
in the data folder (0600), never in a notebook. Every call checks the server is still the one
pinned; a different certificate is refused with an explanation.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from kit.certs import Csr, load_certificate
from kit.cloud import Cloud, CloudStatus, ObserverIdentity, Registration
from kit.cloud.store import Message, Presence
from kit.errors import CloudError, ThingTakenError
from kit.places import kit_home, read_json, write_private

LINK_FILE = "class.json"
HISTORY_QUERY = ("since", "until", "latest", "topic_suffix")  # as Store.messages takes them
CERTIFICATE_FILE = "class-server.pem"
_AFTER_REPAIR = "and log in to the class again: course.use(cloud='class', url=..., user=...)"


@dataclass(frozen=True)
class ClassLink:
    """How this computer reaches the class server: its address, the student, their token and
    the server's certificate as first seen (its fingerprint as on the card)."""

    url: str
    username: str
    token: str = field(repr=False)  # a secret: never in a repr a notebook could show
    fingerprint: str = ""

    def save(self, certificate_pem: str) -> None:
        write_private(kit_home() / CERTIFICATE_FILE, certificate_pem)
        write_private(kit_home() / LINK_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @staticmethod
    def load() -> ClassLink | None:
        values = read_json(kit_home() / LINK_FILE, _AFTER_REPAIR)
        if not values:
            return None
        return ClassLink(**{name: str(values.get(name, "")) for name in ClassLink.__annotations__})

    @staticmethod
    def certificate_file() -> Path:
        return kit_home() / CERTIFICATE_FILE

    @staticmethod
    def forget() -> None:
        """Forget the login on this computer (the token and the pinned certificate)."""
        (kit_home() / LINK_FILE).unlink(missing_ok=True)
        (kit_home() / CERTIFICATE_FILE).unlink(missing_ok=True)


def fingerprint_of(pem: str) -> str:
    """SHA-256 of a certificate, colon-separated hex: as the handout and a browser show it."""
    return load_certificate(pem).sha256_fingerprint


def same_fingerprint(shown: str, expected: str) -> bool:
    """Whether two fingerprints are the same, however they were typed (colons, case)."""

    def plain(text: str) -> str:
        return "".join(c for c in text.upper() if c in "0123456789ABCDEF")

    return bool(plain(expected)) and plain(shown) == plain(expected)


def served_certificate(url: str) -> str:
    """The certificate the class server at `url` shows now (PEM), not yet trusted."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise CloudError(
            f"'{url}' is not the class server's address: it starts with https:// (as on your card)."
        )
    try:
        return ssl.get_server_certificate((parts.hostname, parts.port or 443), timeout=10)
    except OSError as error:
        raise CloudError(
            f"Cannot reach the class server at {url} ({error}). Check the address on your card "
            "and that your laptop is on the classroom network."
        ) from None


def log_in(url: str, username: str, password: str, fingerprint: str) -> ClassLink:
    """Exchange the student's password for a token, if the server shows the certificate whose
    `fingerprint` the student confirmed; keep both (0600). The password is not kept."""
    url = url if url.endswith("/") else url + "/"
    pem = served_certificate(url)
    shown = fingerprint_of(pem)
    if not same_fingerprint(shown, fingerprint):
        raise CloudError(
            f"The class server at {url} shows a certificate with the fingerprint {shown}, not "
            f"the one you confirmed ({fingerprint}). Compare it with your card again; if they "
            "differ, do not log in (another computer may be pretending to be the class server) "
            "and tell your teacher."
        )
    certificate = kit_home() / (CERTIFICATE_FILE + ".new")
    write_private(certificate, pem)
    try:
        with _client(url, certificate) as client:
            answer = client.post("token", json={"username": username, "password": password})
        if answer.status_code != 200:
            raise CloudError(_detail(answer, "The class server refused the login"))
        link = ClassLink(url, answer.json()["username"], answer.json()["token"], shown)
        link.save(pem)
    finally:
        certificate.unlink(missing_ok=True)
    return link


class ClassCloud(Cloud):
    """The class server's API as a Cloud (kit.cloud.Cloud)."""

    name = "class"

    def __init__(self, link: ClassLink | None = None) -> None:
        found = link or ClassLink.load()
        if found is None:
            raise CloudError(
                "This computer has not logged in to a class yet: run "
                "course.use(cloud='class', url=..., user=...) with the address and username "
                "on your card (or `kit use --cloud class --url ... --user ...`)."
            )
        self.link = found
        self.client = _client(found.url, ClassLink.certificate_file(), found.token)

    def _call(self, method: str, path: str, **arguments: Any) -> httpx.Response:
        try:
            answer = self.client.request(method, path, **arguments)
        except httpx.ConnectError as error:
            if isinstance(error.__cause__, ssl.SSLCertVerificationError) or "CERTIFICATE" in str(
                error
            ):
                raise CloudError(
                    f"The class server at {self.link.url} no longer shows the certificate you "
                    f"confirmed ({self.link.fingerprint}). Another computer may be pretending "
                    "to be it: tell your teacher. If your teacher made a new certificate, log "
                    "in again with course.use(cloud='class', ...) and compare the new "
                    "fingerprint with the one they read out."
                ) from None
            raise CloudError(
                f"Cannot reach the class server at {self.link.url}: is it running? Ask your "
                "teacher, and check your laptop is on the classroom network."
            ) from None
        except httpx.HTTPError as error:
            raise CloudError(f"The class server did not answer ({error}). Try again.") from None
        if answer.status_code == 401:
            raise CloudError(
                "The class server no longer accepts this computer's login (your teacher ended "
                "it, or your password changed): run course.use(cloud='class', ...) again."
            )
        return answer

    def _register(self, csr: Csr) -> Registration:
        answer = self._call("POST", "things", json={"csr": csr.pem})
        if answer.status_code == 409:  # the name is held with another key: ThingTakenError
            raise ThingTakenError(_detail(answer, "The class server holds this name already"))
        if answer.status_code != 201:
            raise CloudError(_detail(answer, "The class server refused the registration"))
        fields = answer.json()
        # The device's record says "class": its later steps go through the class server too.
        return Registration(**{**fields, "cloud": self.name})

    def unregister(self, thing: str) -> None:
        answer = self._call("DELETE", f"things/{thing}")
        if answer.status_code not in (204, 404):
            raise CloudError(_detail(answer, f"The class server did not remove {thing}"))

    def things(self) -> list[str]:
        return [row["thing"] for row in self._call("GET", "things").json()]

    def observer(self) -> ObserverIdentity:
        """The class server's stream of the student's own devices (no MQTT identity)."""
        parts = urlsplit(self.link.url)
        port = parts.port or 443
        return ObserverIdentity(
            self.link.url,
            port,
            port,
            ClassLink.certificate_file(),
            None,
            None,
            "",
            transport="events",
            token=self.link.token,
        )

    def history(self, thing: str, **query: Any) -> list[Message]:
        wanted = {k: v for k, v in query.items() if k in HISTORY_QUERY and v is not None}
        answer = self._call("GET", f"things/{thing}/history", params=wanted)
        if answer.status_code == 404:
            return []  # not (or no longer) this student's device
        if answer.status_code != 200:
            raise CloudError(_detail(answer, f"The class server did not give {thing}'s history"))
        return [
            Message(thing, row["topic"], base64.b64decode(row["payload"]), row["received"])
            for row in answer.json()
        ]

    def presence(self, thing: str) -> Presence:
        answer = self._call("GET", f"things/{thing}/presence")
        if answer.status_code != 200:
            return Presence(thing, None, None, None)
        row = answer.json()
        return Presence(thing, row["connected"], row["changed"], row["last_message"])

    def status(self) -> CloudStatus:
        try:
            self._call("GET", "things")
        except CloudError as error:
            return CloudStatus(
                False, f"The class server at {self.link.url} cannot be used.", str(error)
            )
        return CloudStatus(
            True, f"The class server at {self.link.url} answers ({self.link.username})."
        )

    def logins(self) -> list[dict[str, Any]]:
        """The student's live notebook logins (id, created, expires, current), newest first."""
        answer = self._call("GET", "tokens")
        if answer.status_code != 200:
            raise CloudError(_detail(answer, "The class server did not list your logins"))
        return list(answer.json())

    def log_out(self, everywhere: bool = False) -> None:
        """End this computer's login on the class server (`everywhere`: every computer's
        notebook logins of the student), and forget it here whatever the server says."""
        try:
            answer = self._call("DELETE", "tokens" if everywhere else "token")
        except CloudError as error:
            if "no longer accepts" in str(error):  # ended already: nothing left to end
                return
            raise CloudError(
                f"{error} This computer forgot its login; if it may still work elsewhere, "
                "ask your teacher to end it (`kit class roster revoke`)."
            ) from None
        finally:
            self.client.close()
            ClassLink.forget()
        if answer.status_code != 204:
            raise CloudError(_detail(answer, "The class server did not end the login"))

    def files_page(self) -> str:
        return f"{self.link.url.rstrip('/')}/devices"

    def record_extras(self) -> dict[str, str]:
        return {}


def pinned(certificate_file: str) -> ssl.SSLContext:
    """TLS that trusts exactly the class server's own certificate, whatever name it is reached
    by: the fingerprint the student confirmed is the identity, not a CA's word."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # the certificate itself is pinned, not a name
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=certificate_file)
    return context


def _client(url: str, certificate: Path, token: str = "") -> httpx.Client:
    """An HTTPS client of the class server's API that trusts only its pinned certificate."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=url.rstrip("/") + "/api/",
        verify=pinned(str(certificate)),
        headers=headers,
        timeout=30,
    )


def _detail(answer: httpx.Response, fallback: str) -> str:
    """The server's explanation of a refusal, or `fallback` with the status."""
    try:
        detail = answer.json().get("detail")
    except ValueError:
        detail = None
    return str(detail) if isinstance(detail, str) else f"{fallback} (HTTP {answer.status_code})."
