"""Cheap commands stay cheap: they check their arguments and answer without importing torch."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from autoprumux.cli import main
status = main({argv!r})
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print("HEAVY:" + ",".join(heavy))
sys.exit(status)
"""


def run_probe(argv, cwd):
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    heavy = [line for line in done.stdout.splitlines() if line.startswith("HEAVY:")]
    return done.returncode, heavy[-1].removeprefix("HEAVY:") if heavy else None, done.stderr


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["status", "sweeps/demo.toml", "--storage", "sqlite:///nowhere/study.db"], 0),
        (["sweep", "sweeps/demo.toml", "--dry-run"], 0),
        (["bench", "no/such/run"], 2),
        (["train", "--task", "synthetic-sentiment", "--mux", "1.5", "--out", "x"], 2),
    ],
)
def test_cheap_commands_do_not_import_torch(argv, status, tmp_path):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    code, heavy, stderr = run_probe(argv, root)
    assert code == status, stderr
    assert heavy == "", f"{argv[0]} imported {heavy}"
