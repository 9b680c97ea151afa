"""What a course notebook's kernel says when a cell runs before the cells it needs.

After a kernel restart (or opening a notebook the next day) a student runs the cell in front of
them, and Python answers `NameError: name 'course' is not defined` with a traceback. This IPython
extension answers instead: a name that a cell of the notebooks in the kernel's folder defines
means "run the notebook from the top". Any other NameError (a typo) keeps Python's own answer.

The kernels load it through the IPython configuration of the kit's environment
(`<prefix>/etc/ipython/ipython_kernel_config.json`), which `kit lab` and `kit demo` write.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

EXTENSION = "kit.kernel_hints"


def config_file() -> Path:
    """Where IPython kernels of this environment read their configuration (IPython's
    ENV_CONFIG_DIRS: <sys.prefix>/etc/ipython)."""
    return Path(sys.prefix) / "etc" / "ipython" / "ipython_kernel_config.json"


def install() -> None:
    """Have this environment's kernels load the extension; keep every other setting there."""
    path = config_file()
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return  # someone else's file we cannot read: leave it as it is
    app = config.setdefault("IPKernelApp", {}) if isinstance(config, dict) else None
    extensions = app.setdefault("extensions", []) if isinstance(app, dict) else None
    if not isinstance(extensions, list) or EXTENSION in extensions:
        return
    extensions.append(EXTENSION)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)
    except OSError:
        pass  # a read-only installation: a NameError then reads as Python's own


def defined_by(folder: Path, name: str) -> str | None:
    """The first line of a code cell, in the notebooks of `folder`, that defines `name`."""
    for path in sorted(folder.glob("*.ipynb")):
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


def explain(name: str, folder: Path) -> list[str] | None:
    """What to show instead of a NameError's traceback, or None to show Python's own."""
    line = defined_by(folder, name)
    if line is None:
        return None
    sentence = (
        f"'{name}' comes from a cell above ({line}), which this kernel has not run: the kernel "
        "restarted, or the notebook was opened again. Run the notebook from the top: "
        "Run ▸ Run All Cells."
    )
    return ["\x1b[1;31mRun the notebook from the top\x1b[0m", sentence]


def _handler(shell: Any, kind: type, value: BaseException, tb: Any, tb_offset: Any = None) -> None:
    """IPython's custom exception handler: show the course's sentence, or Python's traceback."""
    name = getattr(value, "name", None)
    shown = explain(name, Path.cwd()) if isinstance(name, str) else None
    if shown is not None:
        # IPython shows an exception's _render_traceback_() in place of its traceback, as it
        # does for every KitError.
        value._render_traceback_ = lambda: shown  # type: ignore[attr-defined]  # an exception instance takes attributes
    shell.showtraceback((kind, value, tb), tb_offset=tb_offset)


def load_ipython_extension(shell: Any) -> None:
    """Called by IPython when the kernel starts (the configuration `install` writes)."""
    shell.set_custom_exc((NameError,), _handler)
