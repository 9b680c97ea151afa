"""Render the course's SVG pictures (images/*.svg) to PNG for the notebooks.

JupyterLab shows a cell attachment only as a bitmap (PNG, JPEG, GIF): an SVG attachment stays a
broken image. So the notebooks carry PNGs drawn from the SVGs, at twice their size for a
projector. Run this after changing a picture: it draws the PNGs and puts them into the
notebooks. Needs Chromium (Debian's) and Playwright (both come with `make test`).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nbformat
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def shown_in_notebooks() -> set[str]:
    """The names of the pictures notebook cells show (attachment:<name>)."""
    return {
        name
        for path in (ROOT / "notebooks").glob("*.ipynb")
        for cell in nbformat.read(path, as_version=4).cells
        for name in re.findall(r"\(attachment:([^)]+)\)", cell.source)
    }


def render() -> None:
    """Draw images/<name>.svg as images/<name>.png at twice its size, for each PNG shown."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name in sorted(shown_in_notebooks()):
            svg = (ROOT / "images" / name).with_suffix(".svg")
            text = svg.read_text(encoding="utf-8")
            width, height = (
                int(v) for v in re.search(r'width="(\d+)" height="(\d+)"', text).groups()
            )
            page = browser.new_page(
                viewport={"width": width, "height": height}, device_scale_factor=2
            )
            page.set_content(f"<body style='margin:0'>{text}</body>")
            page.screenshot(path=str(svg.with_suffix(".png")), omit_background=False)
            page.close()
            print(f"{svg.name} -> {svg.with_suffix('.png').name}")
        browser.close()


def attach() -> None:
    """Put images/<name> into every notebook cell that shows attachment:<name>."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            names = re.findall(r"\(attachment:([^)]+)\)", cell.source)
            if names:
                cell["attachments"] = {
                    name: {
                        "image/png": base64.b64encode(
                            (ROOT / "images" / name).read_bytes()
                        ).decode()
                    }
                    for name in names
                }
        nbformat.write(notebook, path)


if __name__ == "__main__":
    render()
    attach()
