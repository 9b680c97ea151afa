"""What a course notebook's kernel says when a cell runs before the cells it needs.

After a kernel restart (or opening a notebook the next day) a student runs the cell in front of
them, and Python answers `NameError: name 'course' is not defined` with a traceback. This IPython
extension answers instead, when a cell of the notebook defines that name: "run the notebook from
the top", with the cell it comes from. Any other NameError (a typo, or one raised inside a
library) keeps Python's own answer.

`kit lab`'s kernels load it: the course's kernelspec (kit.lab.kernel_spec) starts them with
`--ext=kit.kernel_hints`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from kit import environment

EXTENSION = "kit.kernel_hints"


def notebooks_to_search(folder: Path) -> list[Path]:
    """The notebook this kernel runs for (as JupyterLab says), else every one in `folder`."""
    mine = environment.session_notebook()
    if mine.endswith(".ipynb") and Path(mine).is_file():
        return [Path(mine)]
    return sorted(folder.glob("*.ipynb"))


def defined_by(notebooks: list[Path], name: str) -> str | None:
    """The first line of a code cell, in `notebooks`, that defines `name`."""
    for path in notebooks:
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for cell in cells if isinstance(cells, list) else ():
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            if name in _names_bound(source):
                return source.strip().splitlines()[0]
    return None


def _names_bound(source: str) -> set[str]:
    """The names a cell's code assigns or imports (nothing for code Python cannot parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython's magics, or a cell being written
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def explain(name: str, notebooks: list[Path]) -> list[str] | None:
    """What to show instead of a NameError's traceback, or None to show Python's own."""
    line = defined_by(notebooks, name)
    if line is None:
        return None
    sentence = (
        f"'{name}' comes from a cell above ({line}), which this kernel has not run: the kernel "
        "restarted, or the notebook was opened again. Run the notebook from the top: "
        "Run ▸ Run All Cells."
    )
    return ["\x1b[1;31mRun the notebook from the top\x1b[0m", sentence]


def _in_a_cell(shell: Any, tb: TracebackType | None) -> bool:
    """Whether the name was missing in the notebook's own code (the innermost frame runs with
    the notebook's globals), not inside a library."""
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals is shell.user_ns


def _handler(shell: Any, kind: type, value: BaseException, tb: Any, tb_offset: Any = None) -> None:
    """IPython's custom exception handler: show the course's sentence, or Python's traceback."""
    name = getattr(value, "name", None)
    shown = None
    if isinstance(name, str) and _in_a_cell(shell, tb):
        shown = explain(name, notebooks_to_search(Path.cwd()))
    if shown is not None:
        # IPython shows an exception's _render_traceback_() in place of its traceback, as it
        # does for every KitError.
        value._render_traceback_ = lambda: shown  # type: ignore[attr-defined]  # an exception instance takes attributes
    shell.showtraceback((kind, value, tb), tb_offset=tb_offset)


def load_ipython_extension(shell: Any) -> None:
    """Called by IPython when the kernel starts (`--ext=kit.kernel_hints`)."""
    shell.set_custom_exc((NameError,), _handler)
