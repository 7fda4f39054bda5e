"""docs/extending.md is executable documentation.

* Every fenced ``python`` block is one of the four examples (kernel, reduction, cooling law,
  figure); each runs self-contained in a fresh namespace and a temporary directory, and the
  numbers it computes are checked here again, independently where possible (quadrature by
  another rule, finite differences, closed forms, sorting).
* Every fenced ``diff`` block applies (``git apply -C1``: every removed line and the line
  next to each change must match) to a copy of the package as it is now, and the built-in
  kernel, reduction and cooling law it adds work by name; the figure example saved as a
  module of ``paper_figs`` is a built-in figure with no diff (figures are discovered).
* The ``text`` tree of the Layout section lists exactly the files of the package directories.

Statistical checks are seeded; a Monte Carlo mean must lie within ``Z_TOL`` standard errors
of its exact value.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
#: the directories the Layout section describes
PACKAGES = ("anisotropy", "analysis", "experiments", "paper_figs")
#: the examples, in the order of the document (first line of each block: ``# example: NAME``)
EXAMPLES = ("kernel", "reduction", "cooling law", "figure")
#: standard errors allowed for a seeded Monte Carlo check: two-sided Gaussian tail 6e-5
Z_TOL = 4.0
#: wall-clock budget of one example block: each takes 1-5 s on an idle core; six times that
#: tolerates a loaded machine and still catches an example that trains for real
BLOCK_BUDGET_S = 30.0
#: the figure example's one-epoch MLP reaches a test accuracy of about 0.76 on the 4-class
#: synthetic mixture (chance 0.25); below 0.5 the example no longer shows learning
MIN_ACCURACY = 0.5
#: a subprocess that imports torch and fits or trains a little: seconds; a minute is a hang
SUBPROCESS_TIMEOUT_S = 300


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def fenced(lang: str) -> list[str]:
    """The bodies of the fenced ``lang`` blocks of the document, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```$", _text(), re.S | re.M)


def example(tag: str) -> str:
    (code,) = [b for b in fenced("python") if b.startswith(f"# example: {tag}\n")]
    return code


def run_example(tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Execute one example in a fresh namespace with ``tmp_path`` as working directory."""
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": f"extending_{tag.replace(' ', '_')}"}
    t0 = time.perf_counter()
    exec(compile(example(tag), f"{DOC}[{tag}]", "exec"), ns)
    elapsed = time.perf_counter() - t0
    assert elapsed < BLOCK_BUDGET_S, f"example {tag!r} took {elapsed:.1f} s"
    return ns


def test_the_python_blocks_are_the_four_examples():
    tags = [b.split("\n", 1)[0] for b in fenced("python")]
    assert tags == [f"# example: {t}" for t in EXAMPLES]


# ------------------------------------------------------------------------------- kernel
def _trapezoid_free_entropy(ns: dict, points: int = 400_001) -> float:
    """The exact F of the kernel example by the trapezoid rule on a fine grid (error
    O(h^2) ~ 1e-11 relative): an independent check of its scipy quadrature."""
    a, beta, lam, c, w, mask = (ns[k] for k in ("a", "beta", "lam", "c", "w", "mask"))
    x = np.linspace(-a, a, points)
    F = 0.0
    for i, smoothed in enumerate(mask):
        if not smoothed:
            F += beta * 0.5 * lam[i] * (w[i] - c[i]) ** 2
            continue
        f = np.exp(-beta * 0.5 * lam[i] * (w[i] + x - c[i]) ** 2) * (1.0 - np.abs(x) / a)
        F -= math.log(float(np.sum((f[1:] + f[:-1]) * 0.5 * np.diff(x))))
    return F


def test_kernel_example(tmp_path, monkeypatch):
    ns = run_example("kernel", tmp_path, monkeypatch)
    a, res, exact = ns["a"], ns["res"], ns["exact"]
    assert exact == pytest.approx(_trapezoid_free_entropy(ns), rel=1e-8)
    assert res.kernel == "Triangle" and res.n_smoothed == 2
    assert res.log_normaliser == pytest.approx(2 * math.log(a), rel=1e-14)
    # Z_TOL standard errors, plus relvar/y: twice the delta-method bias of the log-mean-exp
    assert abs(res.estimate - exact) < Z_TOL * res.stderr + res.relative_variance / res.y
    # the kernel itself: normalised to a, law of variance a^2/6
    tri = ns["Triangle"](a)
    x = np.linspace(-a, a, 200_001)
    k = np.exp(tri.log_kernel(x))
    assert float(np.sum((k[1:] + k[:-1]) * 0.5 * np.diff(x))) == pytest.approx(a, rel=1e-9)
    d = tri.sample((40_000,), generator=np.random.default_rng(3))
    m2, m4 = a**2 / 6.0, a**4 / 15.0  # moments of a(U1 - U2): E x^4 = a^4 / 15
    assert abs(d.var() - m2) < Z_TOL * math.sqrt((m4 - m2 * m2) / d.size)
    # smoothed loss: mean of the perturbed losses is (0.3)^2/6 tr S; a uniform law of the
    # same half width (variance 0.3^2/3) would be far outside the band
    per, expected, stderr = ns["per"], ns["expected"], ns["stderr"]
    assert per.numel() == 20 * 200
    assert abs(per.mean().item() - expected) < Z_TOL * stderr
    assert abs(per.mean().item() - 2.0 * expected) > 10 * Z_TOL * stderr


# ---------------------------------------------------------------------------- reduction
def test_reduction_example(tmp_path, monkeypatch):
    import torch

    from anisotropy import LossReduction

    ns = run_example("reduction", tmp_path, monkeypatch)
    losses, loss, CVaR = ns["losses"], ns["loss"], ns["CVaR"]
    assert issubclass(CVaR, LossReduction)
    assert losses.shape == (16,) and loss.requires_grad  # y = 15 and the centre
    worst = sorted(losses.tolist())[-4:]
    assert loss.item() == pytest.approx(sum(worst) / 4, rel=1e-12)
    assert CVaR(1.0)(losses).item() == pytest.approx(losses.mean().item(), rel=1e-12)
    assert CVaR(1e-3)(losses).item() == losses.max().item()
    with pytest.raises(ValueError, match=r"q must lie in \(0, 1\]"):
        CVaR(0.0)
    # the gradient of CVaR_0.25 is the mean of the gradients of the 4 worst configurations:
    # the 4 worst losses with weight 1/4 each, by the chain rule through the call
    w = losses.clone().requires_grad_()
    CVaR(0.25)(w).backward()
    expected = torch.zeros_like(losses)
    expected[losses.topk(4).indices] = 0.25
    assert torch.equal(w.grad, expected)
    # the centre comes first and is the unperturbed loss
    ple, x, t = ns["ple"], ns["x"], ns["t"]
    centre = ple.base_loss(ple.model(x), t).item()
    assert losses[0].item() == pytest.approx(centre, rel=1e-12)


# ------------------------------------------------------------------------- cooling law
def test_cooling_law_example(tmp_path, monkeypatch):
    ns = run_example("cooling law", tmp_path, monkeypatch)
    law, fit, truth = ns["law"], ns["fit"], ns["truth"]
    z = (fit.z - law.to_internal(truth)) / np.sqrt(np.diag(fit.cov))
    assert np.all(np.abs(z) < Z_TOL), z
    assert fit.params["t_half"] == pytest.approx(
        fit.params["t0"] * (2.0 ** (1.0 / fit.params["p"]) - 1.0), rel=1e-12
    )
    assert ns["choice"].selected == law.name and ns["result"].selected == law.name
    # the analytic Jacobian against central differences (O(h^2) + round-off ~1e-9)
    t = np.linspace(5.0, 900.0, 61)
    zt, h = law.to_internal(truth), 1e-6
    _, jac = law.log_f(t, zt)
    for j in range(2):
        dz = np.eye(2)[j] * h
        fd = (law.log_f(t, zt + dz)[0] - law.log_f(t, zt - dz)[0]) / (2 * h)
        np.testing.assert_allclose(jac[:, j], fd, rtol=1e-6, atol=1e-7)
    # t0 -> 0 is the power law: -p ln(t + t0) = -p ln t - p t0 / t + O(t0^2)
    from analysis.cooling.laws import log_f

    np.testing.assert_allclose(
        log_f(law, t, {"p": 1.5, "t0": 1e-9}) + 1.5e-9 / t,
        log_f("power_law", t, {"p": 1.5}),
        rtol=1e-14,
    )


# ------------------------------------------------------------------------------ figure
def test_figure_example(tmp_path, monkeypatch):
    from experiments.definitions import load_experiment
    from experiments.results import read_results
    from experiments.sweep import run_sweep

    ns = run_example("figure", tmp_path, monkeypatch)
    sweep, out = ns["sweep"], ns["out"]
    assert (sweep.n_points, sweep.n_run, sweep.n_failed) == (4, 4, 0)
    rows = read_results(sweep.results_path)
    assert {r["smoothing.layers"] for r in rows} == {"none", "fc1"}
    for r in rows:
        assert r["status"] == "complete" and r["epochs_done"] == 1
        assert MIN_ACCURACY < r["final_test_acc"] <= 1.0
    assert [p.suffix for p in out.images] == [".png", ".pdf"]
    assert all(p.stat().st_size > 0 for p in out.images)
    table = out.tables[0].read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| none |") and table[3].endswith("| 2 |")
    # a second sweep finds every run in the store: nothing is trained again
    again = run_sweep(
        load_experiment(tmp_path / "extending_demo" / "fig9.toml", "quick"),
        out=tmp_path / "extending_demo" / "runs",
        log=lambda s: None,
    )
    assert (again.n_skipped, again.n_run) == (4, 0)


# ------------------------------------------------------------------------------ layout
def _layout() -> list[str]:
    """Paths (``dir/`` for directories, globs allowed) of the Layout section's tree."""
    section = _text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    (tree,) = re.findall(r"^```text\n(.*?)^```$", section, re.S | re.M)
    paths: list[str] = []
    stack: list[str] = []
    for line in tree.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        stack[depth:] = [name]
        paths.append("".join(stack))
    return paths


def test_layout_lists_the_tree():
    listed = _layout()
    files = [p for p in listed if not p.endswith("/")]
    for p in listed:
        found = list(ROOT.glob(p.rstrip("/")))
        assert found, f"the Layout section lists {p}, which does not exist"
    covered = {f for p in files for f in ROOT.glob(p)}
    actual = {
        f
        for pkg in PACKAGES
        for f in (ROOT / pkg).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
    }
    missing = sorted(
        str(f.relative_to(ROOT))
        for f in actual - covered
        if f.name != "__init__.py"  # implied by its directory
    )
    assert not missing, f"the Layout section does not list {missing}"
    dirs = {p.rstrip("/") for p in listed if p.endswith("/")}
    packages = {str(f.parent.relative_to(ROOT)) for f in actual if f.name == "__init__.py"} - {"."}
    assert packages <= dirs, sorted(packages - dirs)


# --------------------------------------------------------------------- built-in diffs
BUILTIN_CHECK = r"""
import sys
import numpy as np, torch
import anisotropy
assert anisotropy.__file__.startswith(sys.argv[1]), anisotropy.__file__
from anisotropy import PartialLocalEntropy, SmoothingConfig, reduce_losses
from anisotropy.kernels import as_kernel
from anisotropy.kernels.triangle import TriangleKernel
from analysis.free_entropy import local_free_entropy, quadratic_loss

# kernel: by name in configurations, the estimator and the smoothed loss (with a schedule)
assert as_kernel("triangle", R=0.5) == TriangleKernel(0.5)
assert SmoothingConfig(kernel="triangle", R=0.1).make_kernel() == TriangleKernel(0.1)
loss = quadratic_loss([2.0, 5.0], [0.1, 0.4])
by_name = local_free_entropy(loss, np.zeros(2), kernel="triangle", R=0.8, y=64, seed=1)
assert by_name == local_free_entropy(loss, np.zeros(2), kernel=TriangleKernel(0.8), y=64, seed=1)
ple = PartialLocalEntropy(torch.nn.Sequential(torch.nn.Linear(3, 2)), layers="0",
                          kernel="triangle", R=lambda s: 0.1 / (s + 1), reduction="max")
assert ple.kernel_at(3) == TriangleKernel(0.025)

# reduction: by name in reduce_losses, the smoothed loss and configurations
out = ple(torch.randn(5, 3), torch.randint(0, 2, (5,)),
          generator=torch.Generator().manual_seed(0), step=3)
assert out.loss == out.per_sample.max()
assert reduce_losses(torch.tensor([0.3, 1.2, 0.7]), reduction="max") == 1.2
assert SmoothingConfig(layers=["fc2"], reduction="max").reduction == "max"
from anisotropy.smoothing.reductions import MaxReduction, as_reduction
assert as_reduction("max") == MaxReduction() == SmoothingConfig(reduction="max").make_reduction()
assert ple.loss_reduction == MaxReduction()

# cooling law: by name, in the default analysis, selected on its own synthetic data
from analysis.cooling import CoolingConfig, build_panel, compare, fit_law
from analysis.cooling.laws import LAW_NAMES
from analysis.cooling.synthetic import SyntheticSpec, generate
spec = SyntheticSpec(law="power_law_with_offset", params={"p": 1.5, "t0": 50.0},
                     noise=0.05, rho=0.3)
panel = build_panel(generate(spec, 0)[0], "signal", 40.0)
assert compare({n: fit_law(panel, n) for n in LAW_NAMES}).selected == "power_law_with_offset"
assert "power_law_with_offset" in CoolingConfig().laws

# figure: discovered, importable, its definition shipped
import importlib
from experiments.definitions import load_experiment
from paper_figs.make import FIGURES
fig9 = importlib.import_module(FIGURES["9"])
assert fig9.EXPERIMENTS == ("fig9",) and callable(fig9.draw)
assert len(load_experiment("fig9", "quick").points()) == 4
print("built-ins OK")
"""


@pytest.fixture(scope="module")
def patched_tree(tmp_path_factory) -> Path:
    """A copy of the package directories with every diff block of the document applied,
    and the figure example saved as ``paper_figs/fig9.py`` and ``experiments/fig9.toml``."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is needed to apply the diff blocks (git apply)")
    tree = tmp_path_factory.mktemp("patched")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tree / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    diffs = fenced("diff")
    assert len(diffs) == 3  # kernel, reduction, cooling law (a figure needs no diff)
    for i, d in enumerate(diffs):
        patch = tree / f"block{i}.diff"
        patch.write_text(d)
        done = subprocess.run(
            [git, "apply", "-p1", "-C1", str(patch)], cwd=tree, capture_output=True, text=True
        )
        assert done.returncode == 0, f"diff block {i} does not apply:\n{done.stderr}\n{d}"
    code = example("figure")
    module = code.split("# --- paper_figs/fig9.py", 1)[1].split("\n", 1)[1]
    module = module.split("# --- experiments/fig9.toml", 1)[0]
    (tree / "paper_figs" / "fig9.py").write_text(module)
    (toml,) = re.findall(r'^FIG9_TOML = """(.*?)"""$', code, re.S | re.M)
    (tree / "experiments" / "fig9.toml").write_text(toml)
    return tree


def _run(tree: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )


def test_builtin_diffs_apply_and_work_by_name(patched_tree):
    done = _run(patched_tree, "-c", BUILTIN_CHECK, str(patched_tree))
    assert done.returncode == 0 and "built-ins OK" in done.stdout, done.stderr[-4000:]


@pytest.mark.slow
def test_builtin_figure_is_drawn_by_the_cli(patched_tree, tmp_path):
    done = _run(
        patched_tree,
        "-m",
        "anisotropy",
        "figures",
        "9",
        "--scale",
        "quick",
        "--workers",
        "0",
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "results"),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "results" / "quick"
    assert (out / "fig9.png").stat().st_size > 0
    assert "## Figure 9" in (out / "figures.md").read_text()
