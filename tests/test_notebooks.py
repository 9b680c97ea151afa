"""Notebooks: committed clean, and they run top to bottom with nbclient on the defaults."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def run(path: Path) -> nbformat.NotebookNode:
    """Execute a notebook the way `kit demo` will: in its folder, on a fresh kernel."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=120, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return notebook


def outputs(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell showed, as one string (plain text, HTML, errors)."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        for kind in ("text/plain", "text/html"):
            parts.append(out.get("data", {}).get(kind, ""))
        parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_or_widget_state(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert "widgets" not in notebook.metadata


def test_toolbox_checks_pastes_and_renders_config_h() -> None:
    cells = [
        c
        for c in run(ROOT / "notebooks" / "toolbox_paste_and_check.ipynb").cells
        if c.cell_type == "code"
    ]
    shown = {c.source.splitlines()[0]: outputs(c) for c in cells}

    assert (
        "10:14:00.000 -> ECCX08 Serial Number"
        in shown['pasted_csr = (EXAMPLES / "serial-monitor-csr.txt").read_text()']
    )
    csr = shown["csr = certs.load_csr(pasted_csr)"]
    assert "CN=classroom_07" in csr and "valid: made with the private key" in csr
    assert (
        "Example Course CA"
        in shown['certificate = certs.load_certificate((EXAMPLES / "certificate.pem").read_text())']
    )
    assert "carries this CSR's public key" in shown["certs.compare(csr, certificate)"]

    error = next(c for c in cells if "raises-exception" in c.metadata.get("tags", []))
    [out] = error.outputs
    assert out.output_type == "error"
    assert "copy the whole block, including the END line" in out.traceback[-1]
    assert len(out.traceback) == 2, "a KitError shows as its message, not a traceback"

    rendered = shown["rendered = config_h.render("]
    assert (
        "const char BROKER_HOST[] = &quot;a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com&quot;;"
        in rendered
    )
    assert "removed &#x27;https://&#x27;" in rendered
    assert "made-up-password" not in rendered
