"""The analysis notebook executes top to bottom and shows its tables and three plots.

The kernel is this interpreter, declared by a kernelspec written to a temporary JUPYTER_PATH, so
the test needs no Jupyter kernel installed anywhere.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "auto_prumux.ipynb"
KERNEL = "autoprumux-test-python"


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "autoprumux tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


def _execute(path: Path, kernel_name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, kernel_name=kernel_name, timeout=120, resources={"metadata": {"path": str(path.parent)}}
                   ).execute()
    return notebook


def _outputs(notebook, key: str) -> list[str]:
    return [
        "".join(out.get("data", {}).get(key, "")) if key != "stream" else out.get("text", "")
        for cell in notebook.cells if cell.cell_type == "code"
        for out in cell.outputs
        if (key == "stream" and out.output_type == "stream") or key in out.get("data", {})
    ]


def _check(notebook) -> str:
    errors = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs
              if out.output_type == "error"]
    assert not errors
    assert len(_outputs(notebook, "image/png")) == 3  # Pareto, fitted models, cross-validation
    html = "\n".join(_outputs(notebook, "text/html"))
    for budget in ("1%", "3%", "5%"):
        assert f"<th>{budget}</th>" in html
    assert "recommended" in "\n".join(_outputs(notebook, "stream")).lower()
    return "\n".join(_outputs(notebook, "text/markdown"))


def test_notebook_is_generated_from_its_script():
    sys.path.insert(0, str(NOTEBOOK.parent))
    try:
        from make_notebook import build_notebook
    finally:
        sys.path.remove(str(NOTEBOOK.parent))
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert [c.source for c in stored.cells] == [c.source for c in build_notebook().cells]
    assert all(not c.get("outputs") for c in stored.cells)  # stored unexecuted


def test_notebook_runs_on_the_repository_table(kernel_name):
    markdown = _check(_execute(NOTEBOOK, kernel_name))
    demo = NOTEBOOK.parents[1] / "results" / "demo" / "trials.csv"
    assert ("measured table" in markdown) == demo.is_file()
    assert ("synthetic" in markdown) != demo.is_file()


def test_notebook_falls_back_to_a_synthetic_table(tmp_path, kernel_name):
    # a copy in a project without results/: the fallback runs whatever the repository holds
    copy = tmp_path / "project" / "notebooks" / NOTEBOOK.name
    copy.parent.mkdir(parents=True)
    shutil.copy(NOTEBOOK, copy)
    markdown = _check(_execute(copy, kernel_name))
    assert "was not found" in markdown and "synthetic" in markdown
