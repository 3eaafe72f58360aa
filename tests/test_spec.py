"""Sweep specs: defaults, overrides, and one-line errors that name the field and the accepted form."""

import pytest

from autoprumux.cli import main
from autoprumux.errors import AutoprumuxError, SpecError
from autoprumux.spec import load_spec, spec_from_dict
from autoprumux.sweep import format_plan, plan_sweep

MINIMAL = 'name = "t"\ntask = "synthetic-sentiment"\nmodel = "tiny"\n'


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL + "[grid]\nmux = [4, 1, 2]\nsparsity = [0.5, 0]\n[finetune]\nepochs = 7\n"))
    assert spec.grid.mux == (1, 2, 4)
    assert spec.grid.sparsity == (0.0, 0.5)
    assert spec.training.finetune.epochs == 7.0
    assert spec.training.prune.distill_temperature == 2.0  # default kept
    assert spec.storage_url == "sqlite:///results/t/study.db"
    assert str(spec.table_path) == "results/t/trials.csv"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("[grid]\nmux = [0, 2]\n", "grid.mux[0] = 0"),
        ("[grid]\nmux = [2.5]\n", "grid.mux[0] = 2.5 is invalid; expected an integer"),
        ("[grid]\nsparsity = [1.0]\n", "grid.sparsity[0] = 1.0"),
        ("[grid]\nsparsity = [-0.1]\n", "0 <= s < 1"),
        ("[finetune]\nepochs = \"three\"\n", "finetune.epochs = 'three'"),
        ("[finetune]\nbatch_size = 0\n", "finetune.batch_size = 0"),
        ("[finetune]\nhead_lr_scale = 0\n", "finetune.head_lr_scale = 0"),
        ("[prune]\nlambda = 1\n", "unknown key prune.lambda"),
        ("colour = 1\n", "unknown key colour"),
        ("[mux]\nmultiplexer = \"fourier\"\n", "gaussian_hadamard"),
        ("[mux]\nreadout = \"max\"\n", "mux.readout = 'max' is invalid; expected one of cls, instance_mean"),
        ("storage = \"not a url\"\n", "storage URL"),
    ],
)
def test_malformed_specs_name_the_field(tmp_path, extra, needle):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, MINIMAL + extra))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_task_and_model(tmp_path):
    with pytest.raises(AutoprumuxError, match="no-such-task"):
        spec_from_dict({"name": "t", "task": "no-such-task"})
    with pytest.raises(AutoprumuxError, match="./missing-model"):
        spec_from_dict({"name": "t", "model": "./missing-model"})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(write(tmp_path, "name = \n"))


def test_plan_shares_stages(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL + "[grid]\nmux = [2]\nsparsity = [0.5, 0.9]\n"))
    plan = plan_sweep(spec)
    points = [(t.mux, t.sparsity) for t in plan.trials]
    # the baseline and both families are always part of the grid
    assert sorted(points) == sorted([(1, 0.0), (2, 0.0), (1, 0.5), (2, 0.5), (1, 0.9), (2, 0.9)])
    by_point = {(t.mux, t.sparsity): t for t in plan.trials}
    # pruned points start from their N's s = 0 model, and it is planned before them
    finetune = by_point[(2, 0.0)].final_stage.key
    assert by_point[(2, 0.9)].stages[-2].parent == finetune
    assert points.index((2, 0.0)) < points.index((2, 0.5))
    assert len(plan.unique_stages) < plan.stage_runs_without_reuse
    text = format_plan(plan)
    assert "prumux" in text and "saved" in text


def test_stage_keys_follow_settings(tmp_path):
    a = plan_sweep(load_spec(write(tmp_path, MINIMAL + "[prune]\nepochs = 3\n", "a.toml")))
    b = plan_sweep(load_spec(write(tmp_path, MINIMAL + "[prune]\nepochs = 4\n", "b.toml")))
    stages_a = {s.name + str(s.mux) + str(s.sparsity): s.key for s in a.unique_stages.values()}
    stages_b = {s.name + str(s.mux) + str(s.sparsity): s.key for s in b.unique_stages.values()}
    assert stages_a["finetune20.0"] == stages_b["finetune20.0"]  # unaffected by pruning settings
    assert stages_a["prune20.5"] != stages_b["prune20.5"]
    c = plan_sweep(load_spec(write(tmp_path, MINIMAL + "[finetune]\nhead_lr_scale = 0.3\n", "c.toml")))
    stages_c = {s.name + str(s.mux) + str(s.sparsity): s.key for s in c.unique_stages.values()}
    assert stages_c["finetune20.0"] != stages_a["finetune20.0"]  # the head's learning rate is a setting


def test_cli_dry_run_and_errors(tmp_path, capsys):
    spec = write(tmp_path, MINIMAL)
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "finetune-N1" in out
    bad = write(tmp_path, MINIMAL + "[grid]\nsparsity = [1.0]\n", "bad.toml")
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("autoprumux: error: ") and "grid.sparsity[0] = 1.0" in err
    assert len(err.splitlines()) == 1
