"""A course notebook saved by JupyterLab keeps no live widget (which reads "Error displaying
widget: model not found" once reopened) and no widget state; everything else stays."""

from __future__ import annotations

import copy

import nbformat

from kit import lab, saved_notebooks
from kit.places import checkout


def test_a_saved_notebook_keeps_a_sentence_where_a_widget_was(tmp_path) -> None:
    notebook = nbformat.read(checkout() / "notebooks" / "03_configure_sketch.ipynb", as_version=4)
    form = notebook.cells[[c.cell_type for c in notebook.cells].index("code") + 1]
    form.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                saved_notebooks.WIDGET_VIEW: {"model_id": "abc", "version_major": 2},
                "text/plain": "WifiForm(...)",
            },
        ),
        nbformat.v4.new_output("stream", text="No WiFi name given.\n"),
    ]
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"x": 1}}
    before = copy.deepcopy(notebook)
    model = {"type": "notebook", "content": notebook}
    saved_notebooks.without_live_widgets(model=model, path="03.ipynb", contents_manager=None)
    assert form.outputs[0]["data"] == {"text/plain": saved_notebooks.NOTE}
    assert form.outputs[1] == before.cells[notebook.cells.index(form)].outputs[1]
    assert "widgets" not in notebook.metadata
    nbformat.validate(notebook)  # still a valid notebook
    other = {"type": "file", "content": "text"}
    saved_notebooks.without_live_widgets(model=other)  # not a notebook: left alone
    assert other == {"type": "file", "content": "text"}


def test_kit_lab_has_jupyterlab_run_it_on_every_save(tmp_path) -> None:
    line = lab.command(tmp_path, tmp_path / "home", None, open_browser=False)
    assert f"--ContentsManager.pre_save_hook={saved_notebooks.HOOK}" in line
