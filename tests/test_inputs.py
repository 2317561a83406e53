"""Scalar arguments go through one validator (sampler.schedules.check_number): booleans and strings are
refused with a ValueError naming the argument, not read as 1.0 or parsed (issue 11, defect 17)."""
import pytest
import torch

import analytic as A
from sampler import CFG, Constant, MixtureModel, bind, ddim, get_path, shift_times
from sampler.schedules import check_number


@pytest.mark.parametrize("bad", [True, False, "0.5", b"1", float("nan"), float("inf"), None, [0.5], torch.tensor([1.0, 2.0])])
def test_check_number_refuses(bad):
    with pytest.raises(ValueError, match="x must"):
        check_number(bad, "x")


def test_check_number_accepts_numbers():
    import numpy as np

    assert check_number(2, "x") == 2.0 and check_number(np.float32(0.5), "x") == 0.5
    assert check_number(torch.tensor(0.25, dtype=torch.float64), "x") == 0.25


def test_public_routines_name_the_argument():
    p = A.get_preset("paper_1d")
    x = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="abar must be a number"):
        p.cond.eps(x, "0.5")
    with pytest.raises(ValueError, match="abar must be a number"):
        A.optimal_guidance(p.cond, A.CFGReward(p.cond, p.uncond, 1.0), x, True)
    with pytest.raises(ValueError, match="guidance weight w must be a number"):
        A.CFGReward(p.cond, p.uncond, True)
    with pytest.raises(ValueError, match="w must be a number"):
        Constant(True)
    with pytest.raises(ValueError, match="shift must be a number"):
        shift_times(0.5, "3")
    with pytest.raises(ValueError, match="beta_min must be a number"):
        get_path("vp", beta_min=True)
    m = MixtureModel({0: p.cond, None: p.uncond})
    with pytest.raises(ValueError, match="eta must be a number"):
        ddim(CFG(bind(m, 0), bind(m, None), 1.0), x, torch.tensor([1.0, 0.0]), eta="0.5")


@pytest.mark.parametrize("eta,sampler,match", [
    ("a", "ddim", "eta must be a number, got 'a'"), (None, "ddim", "eta must be a single number, got None"),
    (True, "ddim", "eta must be a number, got True"), ("0.5", "ddpm", "eta must be a number"),
    (float("nan"), "ddim", "eta must be finite"), (1.5, "ddim", r"eta must lie in \[0, 1\], got 1.5"),
    (0.5, "euler", "eta=0.5 is only meaningful for 'ddim'"),
])
def test_output_density_checks_eta_with_the_shared_validator(eta, sampler, match):
    """Issue 20: ``output_density(..., sampler='ddim', eta='a')`` was a bare TypeError from ``0 <= 'a'``, and
    ``eta=True`` ran as eta = 1."""
    from evaluation.density import output_density

    p = A.get_preset("paper_1d")
    cfg = CFG(p.cond.denoise, p.uncond.denoise, 1.0)
    sig = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        output_density(cfg, sig, torch.linspace(-3, 3, 11, dtype=torch.float64), sampler=sampler, eta=eta)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "heun"])
def test_samplers_check_their_generator(name):
    """Issue 20 (beside GaussianMixture.sample's): ``ddpm(..., generator=3)`` was torch's randn TypeError, and
    euler / heun (deterministic) accepted any generator silently."""
    from sampler import sample
    from tests.helpers import GeneratorElsewhere

    p = A.get_preset("paper_1d")
    den, x = p.cond.denoise, torch.zeros(3, 1, dtype=torch.float64)
    sig = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    for bad in (3, "gen", object()):
        with pytest.raises(ValueError, match="generator must be a torch.Generator or None, got"):
            sample(name, den, x, sig, generator=bad)
    with pytest.raises(ValueError, match="generator is on device cuda:0, but the draws are made on cpu"):
        sample(name, den, x, sig, generator=GeneratorElsewhere())
    a = sample(name, den, x, sig, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, sample(name, den, x, sig, generator=torch.Generator().manual_seed(1)))


def test_entry_points_refuse_an_unwritable_output_before_computing(tmp_path, capsys):
    """A file where the output folder should be: one clear line, exit status 2, no traceback, no work."""
    import paper_plots
    from evaluation import report

    blocker = tmp_path / "file"
    blocker.write_text("")
    for main in (report.main, paper_plots.main):
        with pytest.raises(SystemExit) as e:
            main(["--out", str(blocker / "sub")])
        assert e.value.code == 2
        assert "cannot write" in capsys.readouterr().err


def test_write_atomically_leaves_no_temporary_file(tmp_path):
    from evaluation.io import write_atomically

    write_atomically(tmp_path / "a.json", "{}")
    assert (tmp_path / "a.json").read_text() == "{}" and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(OSError):
        write_atomically(tmp_path / "missing" / "a.json", "{}")
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("module,argv,match", [
    ("images.run", ["--sweep", "--n-samples", "0"], "n_samples must be an integer >= 10, got 0"),
    ("images.run", ["--sweep", "--threads", "0"], "--threads must be >= 1, got 0"),
    ("images.run", ["--replot", "--threads", "-2"], "--threads must be >= 1, got -2"),
    ("images.train", ["--threads", "0"], "--threads must be >= 1, got 0"),
    ("images.train", ["--width", "0"], "width must be a positive integer, got 0"),
    ("images.train", ["--steps", "0"], "steps must be a positive integer, got 0"),
    ("images.classifier", ["--threads", "0"], "--threads must be >= 1, got 0"),
    ("images.classifier", ["--steps", "0"], "--steps must be >= 1, got 0"),
    ("toy.report", ["--threads", "0"], "--threads must be >= 1, got 0"),
    ("evaluation.report", ["--cases"], "--cases: expected at least one argument"),
])
def test_defect12_zero_or_missing_arguments_are_errors(module, argv, match, tmp_path, capsys, monkeypatch):
    """Issue 11, defect 12: ``--n-samples 0`` and ``--threads 0`` were dropped by truthiness tests (the run went
    on with the defaults), as were ``--width 0``/``--steps 0`` of the image trainers; ``--cases`` without a
    value must not write an empty report. Each is one clear line and exit status 2, before any work: the
    work itself is replaced by a tripwire, so a silently accepted argument fails here at once."""
    import importlib

    mod = importlib.import_module(module)

    def tripwire(*a, **k):
        raise AssertionError(f"{module} started computing with {argv}")

    for name in ("run_shipped", "load_digits_split", "train_unet", "train_classifier", "quality_table",
                 "compute_case"):
        if hasattr(mod, name):
            monkeypatch.setattr(mod, name, tripwire)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        mod.main(argv + (["--out", str(tmp_path / "out")] if module in ("images.run", "evaluation.report") else []))
    assert e.value.code == 2
    assert match in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.md")) and not list(tmp_path.rglob("*.pt"))
