"""Logging a student's notebooks in to the class server (course.use(cloud="class", ...)).

The student compares the fingerprint the server shows with the one on their card, types their
password once and presses the button: the password becomes a token kept in the data folder
(kit.cloud.class_cloud), the password field is emptied, and the course uses the class server.
Neither the password nor the token ever reaches the notebook or its outputs.
"""

from __future__ import annotations

import html
from dataclasses import replace

import ipywidgets as widgets

from kit import settings
from kit.cloud import class_cloud
from kit.errors import KitError
from kit.printable import printable

# A fingerprint is 95 characters without a space: let it break anywhere rather than be cut.
WRAP = "overflow-wrap:anywhere;word-break:break-all"


class ClassLogin(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """The fingerprint to compare, a password field and the button that logs in."""

    def __init__(self, url: str, username: str) -> None:
        self.url, self.username = url, username
        self.fingerprint = class_cloud.fingerprint_of(class_cloud.served_certificate(url))
        shown = html.escape(self.fingerprint)
        where = html.escape(printable(url))
        intro = widgets.HTML(
            f"<p>The class server at <code>{where}</code> shows this certificate fingerprint "
            f"(SHA-256):</p><p><code style='{WRAP}'>{shown}</code></p><p>Compare it with the "
            "one on your card. Log in only if they are the same.</p>"
        )
        self.password = widgets.Password(
            description=f"Password of {printable(username)}",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="480px"),
        )
        self.button = widgets.Button(
            description="It matches my card: log in",
            icon="sign-in",
            layout=widgets.Layout(width="auto"),  # the whole sentence, never cut short
        )
        self.message = widgets.HTML()
        self.button.on_click(lambda _: self.log_in())
        super().__init__([intro, self.password, self.button, self.message])

    def log_in(self) -> bool:
        """Trade the typed password for a token; say what happened."""
        password, self.password.value = self.password.value, ""  # never left in widget state
        if not password:
            self._say("Type the password from your card first.", ok=False)
            return False
        try:
            link = class_cloud.log_in(self.url, self.username, password, self.fingerprint)
        except KitError as error:
            self._say(str(error), ok=False)
            return False
        settings.save(replace(settings.load(), cloud="class"))
        self._say(
            f"Logged in as {link.username}. The course now registers and watches your devices "
            "through the class server.",
            ok=True,
        )
        return True

    def _say(self, text: str, ok: bool) -> None:
        colour = "#009E73" if ok else "#D55E00"  # as the course's notes: a coloured edge
        self.message.value = (
            f"<div style='border-left:4px solid {colour};padding:4px 10px'>"
            f"{html.escape(printable(text))}</div>"
        )

    def __repr__(self) -> str:
        # An export or a console shows this: never the password.
        return f"Class login for {printable(self.username)} at {printable(self.url)}."
