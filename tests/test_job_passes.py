"""The whole job (pipeline.fit of a .npz: load, checks, fit, summary) reads X no more often
than it must: passes counted deterministically (not timed), and the numbers it prints are
the ones the extra passes it no longer takes gave."""

import os

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from handgrad import registry
from handgrad.fitting import pipeline, solvers, sums, validate
from handgrad.fitting.data import Data
from handgrad.params import flatten

N, D = 3000, 13  # D: no other tensor of the fit has a dimension of that size


class _XReads(TorchDispatchMode):
    """Counts the full passes over X: each LinearSums pass is one (its products on a chunk
    reuse it while in cache); outside those, every op reading X counts its share of X's
    elements (a matrix-vector product over all rows: 1)."""

    def __init__(self):
        super().__init__()
        self.ptr = None  # X's storage, once the fit has it in memory (after the loader)
        self.inside = 0
        self.fused = 0
        self.other = 0.0
        self.where: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.ptr is not None and not self.inside and func._overloadpacket not in (
                torch.ops.aten.slice, torch.ops.aten.t, torch.ops.aten.transpose,
                torch.ops.aten.detach, torch.ops.aten.alias, torch.ops.aten.view,
                torch.ops.aten.permute, torch.ops.aten.as_strided, torch.ops.aten.new_zeros,
                torch.ops.aten.new_empty):
            for t in tree_flatten(args)[0]:
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() == self.ptr:
                    self.other += t.numel() / (N * D)
                    self.where.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N, D)) * np.linspace(0.5, 2.0, D)
    y = (rng.random(N) < 1 / (1 + np.exp(-(X @ (rng.standard_normal(D) * 0.3) - 0.2)))).astype(float)
    path = os.path.join(tmp_path, "X.npz")
    np.savez(path, X=X, y=y)
    return path, X, y


def _counted_fit(path, monkeypatch):
    mode = _XReads()
    check = validate.check_dtype_range
    originals = {k: getattr(sums.LinearSums, k) for k in ("sums", "data_value")}

    def seen(data, dt):  # the data the checks and the fit read, after the loader
        mode.ptr = data.X.untyped_storage().data_ptr()
        return check(data, dt)

    def counting(name):  # each call of the sums' public passes is one pass over X
        def counted(self, *a, **kw):
            if mode.ptr is not None and self.rows.X.untyped_storage().data_ptr() == mode.ptr:
                mode.fused += 1
            mode.inside += 1
            try:
                return originals[name](self, *a, **kw)
            finally:
                mode.inside -= 1
        return counted

    monkeypatch.setattr(validate, "check_dtype_range", seen)
    for name in originals:
        monkeypatch.setattr(sums.LinearSums, name, counting(name))
    with mode:
        out = pipeline.fit("logistic", solver="newton", data_path=path, device="cpu")
    return out, mode


def test_the_whole_job_takes_no_redundant_pass_over_x(npz, monkeypatch):
    """Outside the solver: the preflight (the model's loss and the gradient at the start),
    one min/max pass shared by the scale check and the collinearity screen, the
    separation check's logits; the log-likelihood is the solver's last pass's: 4 passes
    besides the fit's 7.  Before, 6 (a separate |x| pass for the scale check, a loss pass
    after the fit for the log-likelihood)."""
    path, _, _ = npz
    out, mode = _counted_fit(path, monkeypatch)
    fit_passes = out["scale"]["passes"]
    assert out["converged"] and fit_passes == out["iterations"] + 1
    assert mode.fused == fit_passes + 1, mode.where  # + the preflight's gradient
    assert mode.other == pytest.approx(3.0), mode.where  # min/max, loss at start, logits: 4 outside


def test_the_summary_reads_the_same_numbers_as_the_extra_passes_did(npz, monkeypatch):
    """The log-likelihood from the solver's last pass equals a separate pass at the fitted
    point (LinearSums.data_value, the old path), bit for bit, and the model's written loss
    (an independent reference) to 1e-12; the shared min/max gives the scale check the
    same column magnitudes as the |x| pass."""
    path, X, y = npz
    out, _ = _counted_fit(path, monkeypatch)
    entry = registry.get("logistic")
    data = Data(torch.from_numpy(X), torch.from_numpy(y))
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in out["params"].items()}
    obj = solvers.Objective(entry, data, params, {"l2": 0.0})
    old = float(obj.fast.data_value(flatten(params)))
    ll = out["summary"]["log_likelihood"]
    assert ll == -old
    ref = float(entry.loss(params, data, l2=0.0))
    assert abs(ll + ref) <= 1e-12 * abs(ref)

    Xw = X.copy()
    Xw[:, 2] = -np.abs(Xw[:, 2]) * 1e11  # all negative, far larger: the scale check fires
    Xw[:, 4] = 0.0
    Xw[5, 4] = -0.0
    d = Data(torch.from_numpy(Xw), torch.from_numpy(y), feature_names=[f"x{j}" for j in range(D)])
    lohi = validate.column_range(d)
    assert torch.equal(validate.column_magnitudes(d, lohi), validate.column_magnitudes(d))
    assert validate.scale_problem(d, lohi) == validate.scale_problem(d) is not None


def test_the_solver_hands_out_the_data_loss_only_at_its_final_point():
    """FitResult.data_loss is the loss before L2 at the returned point (with L2 > 0 it is
    not the reported loss), and None where the last pass was elsewhere (no pass to reuse)."""
    rng = np.random.default_rng(1)
    X = torch.from_numpy(rng.standard_normal((500, 4)))
    y = (torch.rand(500, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    data = Data(X, y)
    entry = registry.get("logistic")
    like = entry.model.init_params(data)
    obj = solvers.Objective(entry, data, like, {"l2": 2.0})
    res = solvers.newton(obj, flatten(like), tol=1e-10)
    x = flatten(res.params)
    assert res.data_loss == float(obj.fast.data_value(x))
    assert res.data_loss < res.loss  # the L2 term is added once, in the sums, after it
    ref = float(entry.loss(res.params, data, l2=0.0))
    assert abs(res.data_loss - ref) <= 1e-12 * abs(ref)
    gd = solvers.gradient_descent(obj, flatten(like), max_iter=3)
    assert gd.data_loss is None


def _old_checks(X, names):
    """The loader's checks as they were: check_finite, then check_magnitude's |X| pass."""
    from handgrad.errors import UserError
    from handgrad.fitting.data import check_finite, check_magnitude
    try:
        check_finite(X, "X", names)
        check_magnitude(X, names)
    except UserError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("case", ["nan", "inf", "-inf", "huge", "-huge", "fine", "fortran",
                                  "reversed"])
def test_the_loaders_one_scan_says_what_its_two_checks_said(case):
    """validate_arrays checks finiteness and magnitude from one min/max scan: the same
    error (row, column, value) as check_finite and check_magnitude, or none."""
    from handgrad.errors import UserError
    from handgrad.fitting.data import validate_arrays
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    bad = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e160, "-huge": -1e160}
    if case in bad:
        X[17, 2] = bad[case]
        X[30, 1] = bad[case]
    if case == "fortran":
        X = np.asfortranarray(X)
    if case == "reversed":
        X = X[::-1]
    names = ["a", "b", "c", "d"]
    want = _old_checks(X, names)
    try:
        validate_arrays(X, None, names)
        got = None
    except UserError as exc:
        got = str(exc)
    assert got == want
    assert (want is None) == (case in ("fine", "fortran", "reversed"))
