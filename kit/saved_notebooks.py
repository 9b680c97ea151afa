"""What a course notebook keeps when JupyterLab saves it: no live widget.

A widget in a saved notebook is only a pointer to a model that lives in the kernel that made it.
Opened again the next day (JupyterLab reopens the tabs left open), every such output reads
"Error displaying widget: model not found", and the widgets' state, where a notebook keeps it,
could hold what was typed into a field. `kit lab` has JupyterLab run `without_live_widgets` on
every save (ContentsManager.pre_save_hook): each widget becomes a sentence that says how to get
it back, and no widget state is written.
"""

from __future__ import annotations

from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
HOOK = "kit.saved_notebooks.without_live_widgets"
NOTE = "A live widget showed here: run the notebook from the top to see it again."


def without_live_widgets(model: dict[str, Any], **_: Any) -> None:
    """Replace every widget output of a notebook being saved by NOTE, and drop the widget
    state (called by JupyterLab with the contents model, path and contents manager)."""
    content = model.get("content")
    if model.get("type") != "notebook" or not isinstance(content, dict):
        return
    metadata = content.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("widgets", None)
    for cell in content.get("cells") or []:
        for output in (cell.get("outputs") or []) if isinstance(cell, dict) else []:
            data = output.get("data") if isinstance(output, dict) else None
            if isinstance(data, dict) and WIDGET_VIEW in data:
                data.clear()
                data["text/plain"] = NOTE
