"""The class server: one cloud for the whole room, behind the instructor's web site.

store (accounts, sessions, ownership) ← passwords, roster, web_certificate ← site (FastAPI) ←
server (`kit class serve`). The cloud behind it is any `kit.cloud.Cloud`.
"""

from __future__ import annotations

from pathlib import Path

from kit import background


def site_process(folder: Path) -> background.Managed:
    """The class site process's lock, state, output (site.out: what it prints, and why it
    stopped) and requests, in the class folder; its log, serve.log, it writes and rotates
    itself (kit.logs)."""
    return background.Managed(folder, "site", "site.out")
