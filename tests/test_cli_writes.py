"""A contract over every command that writes: an unwritable place is one line and exit 2, and
nothing already written is lost. (Tests run as root, where permissions do not stop writes, so the
unwritable place is a path through a regular file: ENOTDIR, the same class as EROFS or EACCES.)"""

import pytest

from autoprumux.cli import main
from autoprumux.meta import synthetic_table
from autoprumux.table import write_table

TINY_SPEC = """name = "w"
task = "synthetic-sentiment"
model = "tiny"
results_dir = "{results}"
[grid]
mux = [1]
sparsity = [0.0]
[data]
train_size = 32
eval_size = 16
max_seq_len = 12
[finetune]
steps = 2
batch_size = 8
[bench]
batch_size = 2
seq_len = 12
warmup = 1
repeats = 2
threads = 1
"""


@pytest.fixture
def blocker(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("keep me\n")
    return path


def _one_line_error(capsys, needle):
    err = capsys.readouterr().err.strip()
    assert err.startswith("autoprumux: error: cannot ") and needle in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_plot_into_an_unwritable_folder(tmp_path, blocker, capsys):
    table = write_table(synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5)), tmp_path / "t.csv")
    assert main(["plot", "--results", str(table), "--out", str(blocker / "plots")]) == 2
    _one_line_error(capsys, "Not a directory")
    assert blocker.read_text() == "keep me\n"


def test_train_into_an_unwritable_folder(tmp_path, blocker, capsys):
    spec = tmp_path / "w.toml"
    spec.write_text(TINY_SPEC.format(results=tmp_path / "r"))
    argv = ["train", "--spec", str(spec), "--task", "synthetic-sentiment", "--mux", "1", "--out", str(blocker / "run")]
    assert main(argv) == 2
    _one_line_error(capsys, str(blocker))


def test_sweep_into_an_unwritable_results_folder(tmp_path, blocker, capsys):
    spec = tmp_path / "w.toml"
    spec.write_text(TINY_SPEC.format(results=blocker / "results"))
    assert main(["sweep", str(spec)]) == 2
    _one_line_error(capsys, str(blocker))
    assert blocker.read_text() == "keep me\n"


def test_a_results_csv_with_a_fractional_width_is_one_line_too(tmp_path, capsys):
    table = synthetic_table(mux=(1, 2), sparsity=(0.0, 0.5))
    table["mux"] = table["mux"].astype(float)
    table.loc[1, "mux"] = 1.5
    path = write_table(table, tmp_path / "bad.csv")
    assert main(["recommend", "--budget", "3%", "--results", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "column 'mux' must hold integers" in err and len(err.splitlines()) == 1
