"""The three-way checker shared by every model.

For each model, seed and shape (``model.check_problems``):

* gradient: hand (derivations/) vs torch.autograd.grad of the model's loss vs central
  finite differences of the loss;
* Hessian (where derived): hand vs torch.func.hessian vs central differences of the
  autograd gradient.

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


def check_problem(entry, label, params, data, hp, *, seed, dtype, hessian=True, derivation=None):
    """Run the three-way comparison on one problem; ``derivation`` overrides the hand module
    (tests use it to plant wrong derivatives)."""
    deriv = derivation or entry.derivation
    tol = TOLERANCES[dtype]
    p64 = {k: v.detach().to(torch.float64) for k, v in params.items()}
    d64 = data.to(dtype=torch.float64)
    rep = ProblemReport(entry.name, seed, label, note=entry.model.check_note)

    def loss_flat(x):
        return entry.loss(unflatten(x, p64), d64, **hp)

    x0 = flatten(p64)
    # gradient: hand (at the requested dtype) vs autograd vs finite differences
    pd = {k: v.to(dtype) for k, v in params.items()}
    hand = deriv.gradient(pd, data.to(dtype=dtype), **hp)
    _no_graph(hand, "gradient")
    # keys that differ from the parameters: flatten what there is; the shape check reports it
    hand_flat = flatten({k: hand[k] for k in params}) if set(hand) == set(params) else flatten(hand)
    xr = x0.clone().requires_grad_(True)
    auto = torch.autograd.grad(loss_flat(xr), xr)[0]
    fd = finite_diff_grad(loss_flat, x0)
    gname = _grad_namer(p64)
    rep.comparisons += [
        _compare(hand_flat, auto, *tol["autograd"], gname, "gradient", "autograd"),
        _compare(hand_flat, fd, *tol["fd"], gname, "gradient", "fd"),
        _compare(auto, fd, *TOLERANCES[torch.float64]["fd"], gname, "gradient", "autograd_vs_fd"),
    ]
    if hessian and deriv.hessian is not None:
        Hh = deriv.hessian(pd, data.to(dtype=dtype), **hp)
        _no_graph({"H": Hh}, "hessian")
        Ha = torch.func.hessian(loss_flat)(x0)

        def auto_grad(x):
            return torch.func.grad(loss_flat)(x)
        Hf = finite_diff_jac(auto_grad, x0)
        hname = _hess_namer(p64)
        rep.comparisons += [
            _compare(Hh, Ha, *tol["autograd"], hname, "hessian", "autograd"),
            _compare(Hh, Hf, *tol["fd"], hname, "hessian", "fd"),
            _compare(Ha, Hf, *TOLERANCES[torch.float64]["fd"], hname, "hessian", "autograd_vs_fd"),
        ]
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
