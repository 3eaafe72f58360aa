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
        ("[warmup]\nepochs = 3\nsteps = 100\n", "[warmup] gives its length twice (epochs and steps); give one of"),
        ("[finetune]\nsteps = 2.5\n", "finetune.steps = 2.5 is invalid; expected an integer"),
        ("[prune]\nexamples = -5\n", "prune.examples = -5"),
        ("[warmup]\nstep = 100\n", "unknown key warmup.step; accepted keys in [warmup]"),
        ("[warmup]\nretrieval_target = 1.5\n", "warmup.retrieval_target = 1.5"),
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


def test_stage_budgets_in_steps_and_examples(tmp_path):
    """Budget accounting: epochs shrink with N, steps and examples do not; --dry-run says which."""
    spec = load_spec(write(tmp_path, MINIMAL + (
        "[grid]\nmux = [2, 4]\nsparsity = [0.5]\n[data]\ntrain_size = 1000\n"
        "[warmup]\nsteps = 300\nbatch_size = 10\nretrieval_target = 0.99\n"
        "[finetune]\nepochs = 2\nbatch_size = 10\ngrad_accum = 2\n"
        "[prune]\nexamples = 4000\nbatch_size = 10\n"
    )))
    training = spec.training
    assert str(training.warmup.budget) == "300 steps"
    assert str(training.finetune.budget) == "2 epochs"
    assert str(training.prune.budget) == "4,000 examples"
    # steps: the same at every N (grad_accum multiplies the batches, not the steps)
    assert [training.warmup.budget.steps(1000, n, 10) for n in (2, 4)] == [300, 300]
    assert training.finetune.budget.batches(1000, 4, 10, grad_accum=2) == 2 * 25
    assert training.finetune.budget.steps(1000, 4, 10, grad_accum=2) == 25
    # epochs: ceil(ceil(1000 / N) / 10) batches each
    assert [training.finetune.budget.batches(1000, n, 10) for n in (1, 2, 4)] == [200, 100, 50]
    # examples: each batch sees batch_size x N of them
    assert [training.prune.budget.batches(1000, n, 10) for n in (1, 2, 4)] == [400, 200, 100]
    text = format_plan(plan_sweep(spec))
    assert "warmup         300 steps at most, stopping at retrieval accuracy 0.99 = optimizer steps N=2: 300, N=4: 300" in text
    assert "finetune       2 epochs = optimizer steps N=1: 100, N=2: 50, N=4: 25" in text
    assert "prune          4,000 examples = optimizer steps N=1: 400, N=2: 200, N=4: 100" in text


def test_a_zero_warmup_budget_skips_the_stage(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL + "[grid]\nmux = [2]\nsparsity = [0.5]\n[warmup]\nsteps = 0\n"))
    names = {s.name for s in plan_sweep(spec).unique_stages.values()}
    assert "warmup" not in names and "finetune" in names
