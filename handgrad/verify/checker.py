"""The three-way checker shared by every model.

For each model, seed and shape (``model.check_problems``), every piece a fit reads (the
derivation's FIT pieces, handgrad/contract.py; a FIT piece without a comparison here fails):

* gradient: hand (derivations/) vs torch.autograd.grad of the model's loss vs central
  finite differences of the loss;
* Hessian (where derived): hand vs torch.func.hessian vs central differences of the
  autograd gradient;
* the loss value a fit reads, where it is not the model's loss itself (the per-sample
  values of a linear-predictor model, summed, L2 added): vs the model's loss;
* for a linear-predictor model, loss, gradient and Hessian also through the row-chunk pass
  (streamed, chunked, distributed fits), against the same references;
* flat directions (softmax): orthonormal, H v = 0 and g . v = 0 with the autograd Hessian
  and gradient, and as many as the Hessian has zero eigenvalues.

References are computed in float64 (finite differences in float32 are meaningless at
these step sizes).  When the user checks at float32, the hand result is computed at
float32 and compared against the float64 references with float32 tolerances.  A
mismatch names the parameter, the worst entry's index, both values, abs and rel error
and the tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from handgrad import registry
from handgrad.contract import FIT
from handgrad.device import resolve_device, resolve_dtype, set_tf32
from handgrad.notation.tolerance import tolerance
from handgrad.params import flatten, slices, unflatten

# (rtol, atol) for hand vs autograd, and for anything vs finite differences.
TOLERANCES = {
    torch.float64: {"autograd": (1e-9, 1e-11), "fd": (1e-6, 1e-7)},
    torch.float32: {"autograd": (2e-4, 1e-5), "fd": (2e-4, 1e-4)},
}


@dataclass
class Comparison:
    quantity: str  # "gradient" | "hessian"
    hand_vs: str  # "autograd" | "fd" ; "autograd_vs_fd" compares the references
    ok: bool
    max_abs_err: float
    max_rel_err: float
    worst: dict | None = None  # parameter, index, hand, reference, abs_err, rel_err, tol


@dataclass
class ProblemReport:
    model: str
    seed: int
    label: str
    comparisons: list[Comparison] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)


def _compare(hand: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float, names, quantity,
             against) -> Comparison:
    """Elementwise by the one rule (handgrad.notation.tolerance.tolerance): |hand - ref| <=
    rtol*|ref| + atol*max|ref| (atol: the floor, relative to the largest entry)."""
    hand = hand.detach().to(torch.float64).cpu().reshape(-1)
    ref = ref.detach().to(torch.float64).cpu().reshape(-1)
    if hand.shape != ref.shape:
        return Comparison(quantity, against, False, float("inf"), float("inf"), {
            "parameter": "(shape)", "index": None,
            "hand": f"{hand.numel()} entries", "reference": f"{ref.numel()} entries",
            "abs_err": None, "rel_err": None, "tol": None,
            "message": f"shape mismatch: hand has {hand.numel()} entries, reference {ref.numel()}"})
    err = (hand - ref).abs()
    tol = tolerance(ref.abs(), rtol, atol)
    bad = ~(err <= tol)  # NaN counts as bad
    ratio = torch.where(torch.isnan(err), torch.full_like(err, float("inf")), err / tol)
    k = int(torch.argmax(ratio)) if ratio.numel() else 0
    rel = err / ref.abs().clamp_min(1e-300)
    worst = None
    if ratio.numel():
        pname, pidx = names(k)
        worst = {"parameter": pname, "index": pidx, "hand": hand[k].item(),
                 "reference": ref[k].item(), "abs_err": err[k].item(), "rel_err": rel[k].item(),
                 "tol": tol[k].item()}
    return Comparison(quantity, against, not bool(bad.any()), err.max().item() if err.numel() else 0.0,
                      rel.max().item() if rel.numel() else 0.0, worst)


def _grad_namer(params):
    sl = slices(params)

    def name(k):
        for pname, s in sl.items():
            if s.start <= k < s.stop:
                shape = tuple(params[pname].shape)
                idx = list(torch.unravel_index(torch.tensor(k - s.start), shape)) if shape else []
                return pname, [int(i) for i in idx]
        return "?", [k]
    return name


def _hess_namer(params):
    g = _grad_namer(params)
    P = sum(p.numel() for p in params.values())

    def name(k):
        i, j = divmod(k, P)
        (pi, ii), (pj, jj) = g(i), g(j)
        return f"H[{pi},{pj}]", [ii, jj]
    return name


def finite_diff_grad(f, x: torch.Tensor) -> torch.Tensor:
    """Central differences of scalar f at vector x, step eps^(1/3) * max(1, |x_i|)."""
    h0 = torch.finfo(torch.float64).eps ** (1 / 3)
    out = torch.empty_like(x)
    for i in range(x.numel()):
        h = h0 * max(1.0, abs(x[i].item()))
        e = torch.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


def finite_diff_jac(F, x: torch.Tensor) -> torch.Tensor:
    """Central differences of vector F at x: column i is dF/dx_i."""
    h0 = torch.finfo(torch.float64).eps ** (1 / 3)
    cols = []
    for i in range(x.numel()):
        h = h0 * max(1.0, abs(x[i].item()))
        e = torch.zeros_like(x)
        e[i] = h
        cols.append((F(x + e) - F(x - e)) / (2 * h))
    return torch.stack(cols, dim=1)


CHUNK_ROWS = 4  # the row-chunk pass check runs: several chunks, the last one partial


class _Reference:
    """The model's loss (the reference) at one problem in float64, and what autograd and
    central differences make of it, each computed once, when first asked for."""

    def __init__(self, entry, params, data, hp):
        self.p64 = {k: v.detach().to(torch.float64) for k, v in params.items()}
        self.d64 = data.to(dtype=torch.float64)
        self.hp, self.entry = hp, entry
        self.x0 = flatten(self.p64)
        self.gname, self.hname = _grad_namer(self.p64), _hess_namer(self.p64)
        self._memo = {}

    def loss_flat(self, x):
        return self.entry.loss(unflatten(x, self.p64), self.d64, **self.hp)

    def _get(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def loss(self):
        return self._get("loss", lambda: self.loss_flat(self.x0).detach())

    def grad(self):
        def make():
            xr = self.x0.clone().requires_grad_(True)
            return torch.autograd.grad(self.loss_flat(xr), xr)[0]
        return self._get("grad", make)

    def grad_fd(self):
        return self._get("grad_fd", lambda: finite_diff_grad(self.loss_flat, self.x0))

    def hess(self):
        return self._get("hess", lambda: torch.func.hessian(self.loss_flat)(self.x0))

    def hess_fd(self):
        return self._get("hess_fd", lambda: finite_diff_jac(
            lambda x: torch.func.grad(self.loss_flat)(x), self.x0))


def _flat_gradient(hand: dict, params) -> torch.Tensor:
    _no_graph(hand, "gradient")
    # keys that differ from the parameters: flatten what there is; the shape check reports it
    return flatten({k: hand[k] for k in params}) if set(hand) == set(params) else flatten(hand)


# One function per FIT piece of a derivation (handgrad/contract.py): each evaluates the piece
# at the problem, as a fit would, and returns [(quantity, path, value)] to compare with the
# reference (quantity "loss", "gradient" or "hessian"; path names a second way the fit sums
# it) or finished Comparisons.  check_problem runs every FIT piece the derivation provides
# and fails on one this table lacks.

def _check_gradient(fn, P, D, hp, ref, tol):
    return [("gradient", "", _flat_gradient(fn(P, D, **hp), P))]


def _check_hessian(fn, P, D, hp, ref, tol):
    H = fn(P, D, **hp)
    _no_graph({"H": H}, "hessian")
    return [("hessian", "", H)]


def _check_value(fn, P, D, hp, ref, tol):
    f = fn(P, D, **hp)
    _no_graph({"loss": f}, "loss value")
    return [("loss", "", f)]


def _check_linear(linear, P, D, hp, ref, tol):
    """The row-chunk pass (streamed, chunked and distributed fits): loss, gradient and
    Hessian summed over chunks of CHUNK_ROWS rows."""
    f, g, H = linear.chunked(P, D, **hp, chunk_rows=CHUNK_ROWS)
    path = f"row chunks of {CHUNK_ROWS}"
    return [("loss", path, f), ("gradient", path, g), ("hessian", path, H)]


def _check_flat(fn, P, D, hp, ref, tol):
    """The flat directions Newton lifts (rows of N): orthonormal, H v = 0 and g . v = 0 for
    each (the autograd Hessian and gradient of the model's loss), and as many rows as the
    Hessian has zero eigenvalues (so they span its null space: Newton's lifted Hessian
    H + s N^T N is then nonsingular)."""
    N = fn(P, D, **hp)
    _no_graph({"N": N}, "flat directions")
    n = ref.x0.numel()
    if N.dim() != 2 or N.shape[1] != n:
        return [Comparison("flat", "shape", False, float("inf"), float("inf"), {
            "parameter": "(shape)", "index": None, "hand": str(tuple(N.shape)),
            "reference": f"(k, {n})", "abs_err": None, "rel_err": None, "tol": None,
            "message": f"flat_directions has shape {tuple(N.shape)}; it must be (k, {n}), "
                       "one row per direction over the flattened parameters"})]
    N = N.detach().to(torch.float64).cpu()
    k = N.shape[0]
    H, g = ref.hess().cpu(), ref.grad().cpu()
    eye = torch.eye(k, dtype=torch.float64)
    off = torch.eye(n, dtype=torch.float64) - N.T @ N  # projects out the flat directions
    out = [_compare(N @ N.T, eye, *tol["autograd"], lambda i: ("N N^T", list(divmod(i, k))),
                    "flat", "orthonormal"),
           _compare(H @ off, H, *tol["autograd"], ref.hname, "flat", "hessian"),
           _compare(off @ g, g, *tol["autograd"], ref.gname, "flat", "gradient")]
    # and no other: as many eigenvalues of the Hessian are 0 (at rounding level next to the
    # largest, by the comparison's own rule, in float64 like the Hessian) as there are rows
    lam = torch.linalg.eigvalsh(0.5 * (H + H.T)).abs()
    top = lam.max().clamp_min(1.0)
    zero = [_compare(top + v, top, *TOLERANCES[torch.float64]["autograd"], lambda i: ("", []),
                     "flat", "count").ok for v in lam]
    out.append(_compare(torch.tensor([float(k)]), torch.tensor([float(sum(zero))]),
                        *tol["autograd"], lambda i: ("number of flat directions", []),
                        "flat", "count"))
    return out


PIECE_CHECKS = {"gradient": _check_gradient, "hessian": _check_hessian,
                "value": _check_value, "linear": _check_linear,
                "flat_directions": _check_flat}
_QUANTITY = {"gradient": "gradient", "hessian": "hessian", "value": "loss", "linear": "loss",
             "flat_directions": "flat"}


def _paths(namer, size, labels):
    """Entry k of several same-size results laid end to end: its name in result k // size,
    with that result's path said when it has one."""
    def name(k):
        j, i = divmod(k, size)
        pname, idx = namer(i)
        return (f"{pname} ({labels[j]})" if labels[j] else pname), idx
    return name


def _against(quantity, parts, refs, rep_quantity_namer):
    """Compare one quantity's results (every path) with each reference: [(label, tol,
    against, reference)]."""
    namer, n = rep_quantity_namer
    bad = next((v for _, v in parts if v.numel() != n), None)
    if bad is not None:  # the shape message names the mismatch
        return [_compare(bad, refs[0][2], *refs[0][0], namer, quantity, refs[0][1])]
    hand = torch.cat([v.detach().to(torch.float64).cpu().reshape(-1) for _, v in parts])
    name = _paths(namer, n, [p for p, _ in parts])
    return [_compare(hand, ref.reshape(-1).repeat(len(parts)), *t, name, quantity, against)
            for t, against, ref in refs]


def _raised(quantity, piece, err) -> Comparison:
    msg = f"{piece} raised {type(err).__name__}: {err}".splitlines()[0]
    return Comparison(quantity, "error", False, float("inf"), float("inf"), {
        "parameter": piece, "index": None, "hand": None, "reference": None, "abs_err": None,
        "rel_err": None, "tol": None, "message": msg})


def check_problem(entry, label, params, data, hp, *, seed, dtype, hessian=True, derivation=None):
    """Compare every piece a fit reads (the derivation's FIT pieces, handgrad/contract.py)
    with the model's loss at one problem: gradient and Hessian against autograd and central
    differences, the loss value (in memory and over row chunks) against the loss itself,
    flat directions against the autograd Hessian and gradient.  ``derivation`` overrides
    the hand module (tests use it to plant wrong derivatives)."""
    deriv = derivation or entry.derivation
    tol = TOLERANCES[dtype]
    t64 = TOLERANCES[torch.float64]
    ref = _Reference(entry, params, data, hp)
    rep = ProblemReport(entry.name, seed, label, note=entry.model.check_note)
    pd = {k: v.to(dtype) for k, v in params.items()}
    dd = data.to(dtype=dtype)
    results = {"gradient": [], "hessian": [], "loss": []}
    later = []
    for piece, fn in deriv.pieces(FIT).items():
        if piece == "hessian" and not hessian:
            continue
        run = PIECE_CHECKS.get(piece)
        if run is None:  # a piece fits may read that nothing here compares: a failure
            later.append(Comparison(piece, "unchecked", False, float("inf"), float("inf"), {
                "parameter": piece, "index": None, "hand": None, "reference": None,
                "abs_err": None, "rel_err": None, "tol": None,
                "message": f"the derivation provides {piece!r}, which fits read and check "
                           "has no comparison for (handgrad/verify/checker.py PIECE_CHECKS)"}))
            continue
        try:
            for item in run(fn, pd, dd, hp, ref, tol):
                if isinstance(item, Comparison):
                    later.append(item)
                else:
                    results[item[0]].append(item[1:])
        except Exception as err:  # an evaluation error in a piece: a failure naming it
            later.append(_raised(_QUANTITY[piece], piece, err))
    n = ref.x0.numel()
    if results["gradient"]:
        rep.comparisons += _against("gradient", results["gradient"], [
            (tol["autograd"], "autograd", ref.grad()), (tol["fd"], "fd", ref.grad_fd())],
            (ref.gname, n))
        rep.comparisons.append(_compare(ref.grad(), ref.grad_fd(), *t64["fd"], ref.gname,
                                        "gradient", "autograd_vs_fd"))
    if results["hessian"]:
        rep.comparisons += _against("hessian", results["hessian"], [
            (tol["autograd"], "autograd", ref.hess()), (tol["fd"], "fd", ref.hess_fd())],
            (ref.hname, n * n))
        rep.comparisons.append(_compare(ref.hess(), ref.hess_fd(), *t64["fd"], ref.hname,
                                        "hessian", "autograd_vs_fd"))
    if results["loss"]:
        rep.comparisons += _against("loss", results["loss"], [
            (tol["autograd"], "model", ref.loss())], (lambda i: ("loss", []), 1))
    rep.comparisons += later
    return rep


def _no_graph(tensors: dict, what: str) -> None:
    for k, v in tensors.items():
        if isinstance(v, torch.Tensor) and v.grad_fn is not None:
            raise AssertionError(f"hand-derived {what} {k!r} carries an autograd graph")


def check_entry(entry, *, seeds=(0, 1, 2), dtype=torch.float64, device="cpu", derivation=None):
    set_tf32(False)
    reports = []
    for seed in seeds:
        for label, params, data, hp in entry.model.check_problems(seed, torch.float64, device):
            reports.append(check_problem(entry, label, params, data, hp, seed=seed, dtype=dtype,
                                         derivation=derivation))
    return reports


def report_dict(rep: ProblemReport) -> dict:
    d = asdict(rep)
    d["ok"] = rep.ok
    return d


def check_models(models: list[str], *, device="auto", dtype="float64", seeds=(0, 1, 2)) -> dict:
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    set_tf32(False)
    out = {"device": str(dev), "dtype": dtype, "seeds": list(seeds), "models": {}, "ok": True}
    for name in models:
        entry = registry.get(name)
        reps = check_entry(entry, seeds=seeds, dtype=dt, device=dev)
        ok = all(r.ok for r in reps)
        out["models"][name] = {"ok": ok, "hessian": entry.has_hessian,
                               "problems": [report_dict(r) for r in reps]}
        out["ok"] = out["ok"] and ok
    return out


def check_function(f, grad, inputs: dict[str, torch.Tensor]) -> ProblemReport:
    """A user's own scalar function f(*inputs) and hand gradient grad(*inputs): hand vs
    torch.autograd vs central finite differences, in float64, the worst entry named."""
    p64 = {k: torch.as_tensor(v).detach().to(torch.float64) for k, v in inputs.items()}

    def f_flat(x):
        out = f(*unflatten(x, p64).values())
        out = torch.as_tensor(out)
        if out.numel() != 1:
            raise ValueError(f"f must return a scalar; it returned shape {tuple(out.shape)}")
        return out.reshape(())

    x0 = flatten(p64)
    hand = grad(*(v.clone() for v in p64.values()))
    hand = (hand,) if torch.is_tensor(hand) else tuple(hand)
    if len(hand) != len(p64):
        raise ValueError(f"grad returned {len(hand)} tensors for {len(p64)} inputs")
    rep = ProblemReport("check_gradient", 0, ", ".join(f"{k} {tuple(v.shape)}" for k, v in p64.items()))
    shapes_ok = all(tuple(torch.as_tensor(h).shape) == tuple(v.shape) for h, v in zip(hand, p64.values()))
    hand_flat = torch.cat([torch.as_tensor(h).detach().to(torch.float64).reshape(-1) for h in hand])
    xr = x0.clone().requires_grad_(True)
    auto = torch.autograd.grad(f_flat(xr), xr)[0]
    fd = finite_diff_grad(f_flat, x0)
    name = _grad_namer(p64)
    tol = TOLERANCES[torch.float64]
    rep.comparisons += [_compare(hand_flat, auto, *tol["autograd"], name, "gradient", "autograd"),
                        _compare(hand_flat, fd, *tol["fd"], name, "gradient", "fd"),
                        _compare(auto, fd, *tol["fd"], name, "gradient", "autograd_vs_fd")]
    if not shapes_ok:
        got = ", ".join(str(tuple(torch.as_tensor(h).shape)) for h in hand)
        want = ", ".join(str(tuple(v.shape)) for v in p64.values())
        rep.comparisons.insert(0, Comparison("gradient", "shape", False, float("inf"), float("inf"), {
            "parameter": "(shape)", "index": None, "hand": got, "reference": want,
            "abs_err": None, "rel_err": None, "tol": None,
            "message": f"grad has shape(s) {got}; the inputs have {want} (denominator layout: "
                       "a gradient has its input's shape)"}))
    return rep
