"""Cooling laws as objects: the registry, and a user's law (defined here, not in the package)
taking part in the fit, the model selection and the whole analysis."""

import ast
import json
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

import analysis.cooling as cooling
from analysis.cooling import CoolingConfig, analyse, build_panel, compare, fit_law, plot_cooling
from analysis.cooling.laws import LAW_NAMES, Law, LawName, Nesting, get_law, log_f, nests
from analysis.cooling.synthetic import SyntheticSpec, generate

#: offsets tried for the starting point, in units of the window start
T0_GRID = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0)


class PowerLawWithOffset(Law):
    r"""``f(t) = (1 + t/t0)^-p`` up to the amplitude, i.e. ``g = -p ln(t + t0)``: a power law
    whose clock starts ``t0`` epochs before training; the power law is its ``t0 -> 0`` limit."""

    name = "power_law_with_offset"
    params = ("p", "t0")
    log_params = (False, True)
    nests = (Nesting("power_law", "t0", 0.0, regular=True, side="above"),)

    def bounds(self, t_lo, t_hi):
        # ln t0 from 20 e-folds below the window start (numerically the power law) to 5 above
        # its end (numerically an exponential)
        return np.array([-np.inf, np.log(t_lo) - 20.0]), np.array([np.inf, np.log(t_hi) + 5.0])

    def log_f(self, t, z):
        t0 = np.exp(z[1])
        lt = np.log(t + t0)
        return -z[0] * lt, np.column_stack([-lt, -z[0] * t0 / (t + t0)])

    def initial_guess(self, t, y):
        best, z = np.inf, np.zeros(2)
        for c in T0_GRID:  # at fixed t0, p by linear least squares
            x = np.log(t + c * t.min())
            xc = x - x.mean()
            p = -float(xc @ y / (xc @ xc))
            rss = float(np.sum((y + p * xc) ** 2))
            if rss < best:
                best, z = rss, np.array([p, np.log(c * t.min())])
        return [z]

    def derived(self, params):
        # f halves (from t = 0) at t0 (2^(1/p) - 1)
        return {"t_half": params["t0"] * (2.0 ** (1.0 / params["p"]) - 1.0)}


LAW = PowerLawWithOffset()
TRUTH = {"p": 1.5, "t0": 50.0}
ONSET = 40.0


def _data(seed, **kw):
    spec = SyntheticSpec(
        law=LAW, params=TRUTH, noise=0.05, rho=0.3, n_epochs=400, onset=ONSET, **kw
    )
    return generate(spec, seed)


def test_registry_is_one_vocabulary():
    assert get_args(LawName) == LAW_NAMES
    for name in LAW_NAMES:
        law = get_law(name)
        assert isinstance(law, Law) and law.name == name
        assert len(law.internal) == law.n_params == len(law.log_params)
    assert get_law(LAW) is LAW
    with pytest.raises(ValueError) as exc:
        get_law(LAW.name)  # a user's law is passed as an object, not a name
    assert all(n in str(exc.value) for n in LAW_NAMES)
    with pytest.raises(TypeError, match=r"PowerLawWithOffset\(\)"):
        get_law(PowerLawWithOffset)
    with pytest.raises(TypeError, match="law must be"):
        get_law(3)


def test_nesting_is_declared_and_transitive():
    assert nests("stretched_exponential", "exponential")
    assert nests("stretched_then_exponential", "exponential")  # through the stretched law
    assert not nests("power_law", "exponential") and not nests("exponential", "power_law")
    assert nests(LAW, "power_law") and not nests(LAW, "exponential")


def test_incomplete_law_classes_are_refused():
    class NoLogF(Law):
        name, params, log_params = "x", ("a",), (False,)

        def bounds(self, t_lo, t_hi):
            return np.array([0.0]), np.array([1.0])

        def initial_guess(self, t, y):
            return [np.array([0.5])]

    with pytest.raises(TypeError, match="log_f"):
        NoLogF()
    with pytest.raises(TypeError, match="log_params"):
        type("Bad", (PowerLawWithOffset,), {"log_params": (True,)})
    with pytest.raises(TypeError, match="nests"):
        type("Bad", (PowerLawWithOffset,), {"nests": (Nesting("power_law", "q", 0.0),)})


def test_user_law_jacobian_and_limit():
    t = np.linspace(5.0, 900.0, 61)
    z = LAW.to_internal(TRUTH)
    _, J = LAW.log_f(t, z)
    h = 1e-6
    for j in range(2):
        dz = np.zeros(2)
        dz[j] = h
        fd = (LAW.log_f(t, z + dz)[0] - LAW.log_f(t, z - dz)[0]) / (2 * h)
        # central differences: O(h^2) truncation, round-off ~1e-16 |g| / h ~ 1e-9
        np.testing.assert_allclose(J[:, j], fd, rtol=1e-6, atol=1e-7)
    # t0 -> 0 is the power law: -p ln(t + t0) = -p ln t - p t0/t + O(t0^2)
    t0 = 1e-9
    np.testing.assert_allclose(
        log_f(LAW, t, {"p": 1.5, "t0": t0}) + 1.5 * t0 / t,
        log_f("power_law", t, {"p": 1.5}),
        rtol=1e-14,
    )


def test_user_law_recovered_and_selected():
    """5 seeds, 5% AR(1) noise (rho = 0.3), window 40-400: every internal parameter within 4
    sandwich standard errors of the truth (P(|Z| > 4) = 6e-5 per parameter), and BIC selects
    the user's law among the five with the power law rejected inside it by the LRT."""
    for seed in range(5):
        d, truth = _data(seed)
        assert truth["law"] == LAW.name
        p = build_panel(d, "signal", ONSET)
        fits = {n: fit_law(p, n) for n in LAW_NAMES}
        f = fits[LAW.name] = fit_law(p, LAW)
        zscore = (f.z - LAW.to_internal(TRUTH)) / np.sqrt(np.diag(f.cov))
        assert np.all(np.abs(zscore) < 4), (seed, zscore)
        assert f.params["t_half"] == pytest.approx(f.params["t0"] * (2 ** (1 / f.params["p"]) - 1))
        c = compare(fits)
        assert c.selected == LAW.name
        (lrt,) = [r for r in c.lrt if r["alternative"] == LAW.name]
        assert lrt["null"] == "power_law" and lrt["side"] == "above"
        assert (
            lrt["p_value_one_sided"] == pytest.approx(lrt["p_value"] / 2) and lrt["p_value"] < 1e-6
        )
        # nested in each other: no Vuong test of the pair; the built-in pairs are unchanged
        assert [(v["a"], v["b"]) for v in c.vuong] == [
            ("exponential", "power_law"),
            ("stretched_exponential", "power_law"),
            ("stretched_then_exponential", "power_law"),
        ]


def test_user_law_in_the_whole_analysis(tmp_path):
    d, _ = _data(7)
    cfg = CoolingConfig(
        laws=["exponential", "stretched_exponential", "power_law", LAW], n_boot=20, n_stability=2
    )
    res = analyse(d, cfg)
    assert res.selected == LAW.name and res.fit().model is LAW
    assert res.stability["law"] == LAW.name
    out = json.loads(res.save(tmp_path / "cooling.json").read_text())
    assert out["config"]["laws"][-1] == LAW.name and set(out["laws"][LAW.name]["params"]) == {
        "p",
        "t0",
        "t_half",
    }
    assert (
        f"LRT power_law in {LAW.name}" in res.report()
        and "(t0 > 0, boundary mixture)" in res.report()
    )
    assert len(plot_cooling(res, d, path=tmp_path / "fig.png").axes) == 1
    with pytest.raises(ValueError, match="distinct names"):
        CoolingConfig(laws=["power_law", "power_law"])
    with pytest.raises(TypeError, match="law must be"):
        CoolingConfig(laws=[1.5])


def test_no_import_cycle_inside_the_package():
    """The modules of analysis.cooling import each other (at any depth, also inside
    functions) without a cycle; in particular fit and bootstrap no longer import each other."""
    pkg = Path(cooling.__file__).parent
    graph = {}
    for f in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= (
                    {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
                )  # from . import x
        graph[f.stem] = {m for m in deps if m and (pkg / f"{m}.py").exists()}
    state: dict = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for dep in sorted(graph[m]):
            visit(dep, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        visit(m, [])
    assert "fit" not in graph["bootstrap"] and "bootstrap" in graph["fit"]
