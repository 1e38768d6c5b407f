"""Two-layer neural network with softmax cross-entropy, the notes' worked example 7.

The notes' batch form, with samples as the columns of X (d, N) -- handgrad's Data holds
samples as rows, so the model uses X = data.X^T:

    A1 = W1 X + b1 1^T,   H1 = sigma(A1),   A2 = W2 H1 + b2 1^T          (h, N), (K, N)
    l  = -sum_i y_i^T log softmax(a_2i) + (l2/2) (||W1||_F^2 + ||W2||_F^2)

Parameters: W1 (h, d), b1 (h,), W2 (K, h), b2 (K,) (no biases with intercept=False).
Hyper-parameters: ``hidden`` h (default 32) and ``activation`` sigma in {sigmoid, tanh,
relu} (default tanh).  log softmax is log_softmax (logsumexp).  ReLU has a kink at 0:
relu'(0) is taken as 0, and the gradient checks use points with every |A1| >= 0.05.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from handgrad.contract import Role, Target
from handgrad.errors import UserError
from handgrad.fitting.data import Data, prepare_class_labels

NAME = "two_layer"
TITLE = "Two-layer neural network"
TARGET = Target.LABELS
PARAMS = {"W1": Role.LAYER, "b1": Role.LAYER_BIAS,  # roles, in parameter order
          "W2": Role.LAYER, "b2": Role.LAYER_BIAS}
SOLVERS = ("adam", "sgd", "gd")
DEFAULT_SOLVER = "adam"
ACTIVATIONS = ("sigmoid", "tanh", "relu")
DEFAULT_HIDDEN = 32
DEFAULT_ACTIVATION = "tanh"
KINK_MARGIN = 0.05
CHECK_NOTE = (f"two_layer: ReLU is checked only at points where every pre-activation has "
              f"|A1| >= {KINK_MARGIN} (each hidden unit's bias is placed in a gap of its "
              "pre-activations), away from the kink at 0 where relu is not differentiable; "
              "relu'(0) is taken as 0.")
HYPER = ("hidden", "activation")  # model options, from --hidden and --activation
TEACHER = {"hidden": 16, "activation": "tanh"}  # the synthetic data's generating network


def activation_fn(name: str):
    if name not in ACTIVATIONS:
        raise UserError(f"Unknown activation {name!r}; choose from: {', '.join(ACTIVATIONS)}.")
    return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[name]


def n_classes(data: Data) -> int:
    y = data.y
    return int(y.shape[1]) if y.dim() == 2 else int(y.max().item()) + 1


def onehot_T(y: torch.Tensor, K: int, dtype) -> torch.Tensor:
    """Y (K, N): one-hot columns, the notes' layout."""
    Y = y.to(dtype) if y.dim() == 2 else F.one_hot(y.long(), K).to(dtype)
    return Y.T


def forward(params, data: Data, activation: str = DEFAULT_ACTIVATION):
    """(A1, H1, A2), each with samples as columns."""
    X = data.X.T
    A1 = params["W1"] @ X
    if "b1" in params:
        A1 = A1 + params["b1"].unsqueeze(1)
    H1 = activation_fn(activation)(A1)
    A2 = params["W2"] @ H1
    if "b2" in params:
        A2 = A2 + params["b2"].unsqueeze(1)
    return A1, H1, A2


def loss(params, data: Data, *, l2: float = 0.0, activation: str = DEFAULT_ACTIVATION,
         **_) -> torch.Tensor:
    _, _, A2 = forward(params, data, activation)
    logp = F.log_softmax(A2, dim=0)
    out = -(onehot_T(data.y, A2.shape[0], A2.dtype) * logp).sum()
    if l2:
        out = out + 0.5 * l2 * ((params["W1"] ** 2).sum() + (params["W2"] ** 2).sum())
    return out


def init_params(data: Data, *, intercept: bool = True, hidden: int | None = None,
                activation: str | None = None, seed: int = 0, **_) -> dict[str, torch.Tensor]:
    """W1 ~ N(0, g^2 / (d m2)), m2 the mean square of the inputs (so each pre-activation
    has variance about g^2 whatever the features' units; g^2 = 2 for relu, 1 otherwise),
    W2 ~ N(0, 1/h), biases 0.  Seeded."""
    h = DEFAULT_HIDDEN if hidden is None else int(hidden)
    act = activation or DEFAULT_ACTIVATION
    activation_fn(act)
    if h < 1:
        raise UserError(f"--hidden must be >= 1; got {h}.")
    K, d = n_classes(data), data.d
    g = torch.Generator().manual_seed(seed)
    m2 = max((data.X * data.X).mean().item(), 1e-12)
    gain = 2.0 if act == "relu" else 1.0
    dt, dev = data.X.dtype, data.X.device
    W1 = torch.randn(h, d, generator=g, dtype=torch.float64) * math.sqrt(gain / (d * m2))
    W2 = torch.randn(K, h, generator=g, dtype=torch.float64) / math.sqrt(h)
    p = {"W1": W1.to(dev, dt)}
    if intercept:
        p["b1"] = data.X.new_zeros(h)
    p["W2"] = W2.to(dev, dt)
    if intercept:
        p["b2"] = data.X.new_zeros(K)
    return p


prepare = prepare_class_labels  # labels to int64 0..K-1, re-encoding said in data.notes


def evaluate(params, data: Data, *, activation: str = DEFAULT_ACTIVATION, **_) -> dict:
    """Accuracy and mean log-likelihood per sample (natural log)."""
    _, _, A2 = forward(params, data, activation)
    logp = F.log_softmax(A2, dim=0)
    y = data.y.argmax(1) if data.y.dim() == 2 else data.y.long()
    ll = logp.gather(0, y.unsqueeze(0)).mean().item()
    return {"n": data.n, "accuracy": (A2.argmax(0) == y).to(A2.dtype).mean().item(),
            "log_likelihood": ll}


def evaluate_truth(truth, data: Data, **hp) -> dict:
    """The generating network's own held-out scores (the best a fit can hope for)."""
    return evaluate(truth, data, activation=TEACHER["activation"])


def synthetic(*, n: int = 3000, d: int = 8, seed: int = 0, k: int = 3, **_):
    """Labels drawn from a random teacher network (hidden 16, tanh); returns (data, teacher).

    A network is identified only up to permuting hidden units, so the teacher's weights are
    not what a fit should recover: compare held-out accuracy with the teacher's instead."""
    g = torch.Generator().manual_seed(seed)
    h = TEACHER["hidden"]
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    W1 = 2.0 * torch.randn(h, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    b1 = 0.5 * torch.randn(h, generator=g, dtype=torch.float64)
    W2 = 3.0 * torch.randn(k, h, generator=g, dtype=torch.float64) / math.sqrt(h)
    b2 = torch.zeros(k, dtype=torch.float64)
    truth = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    _, _, A2 = forward(truth, Data(X, None), TEACHER["activation"])
    y = torch.multinomial(torch.softmax(A2.T, dim=1), 1, generator=g).reshape(-1)
    return Data(X, y, target="y", source=f"synthetic data with {k} classes, seed {seed}"), truth


def _relu_safe_biases(W1: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """b1 with every |W1 x_i + b1| well away from 0: each unit's bias is minus the midpoint
    of the widest gap between its sorted pre-activations (so some samples are on each side
    of the kink)."""
    Z = torch.sort(W1 @ X.T, dim=1).values  # (h, n)
    gaps = Z[:, 1:] - Z[:, :-1]
    j = gaps.argmax(1)
    mid = 0.5 * (Z.gather(1, j.unsqueeze(1)) + Z.gather(1, (j + 1).unsqueeze(1))).squeeze(1)
    return -mid


def check_problems(seed: int, dtype=torch.float64, device="cpu"):
    """Each activation, with and without biases and L2, labels as integers and one-hot.
    ReLU points have every |A1| >= KINK_MARGIN (see CHECK_NOTE)."""
    g = torch.Generator().manual_seed(5000 + seed)
    out = []
    cases = [(7, 3, 4, 3, "sigmoid", True, 0.0, False), (9, 4, 3, 2, "tanh", True, 0.5, True),
             (8, 3, 5, 4, "relu", True, 0.2, False), (6, 5, 2, 3, "tanh", False, 0.0, False)]
    for n, d, h, K, act, intercept, l2, hot in cases:
        for _attempt in range(100):
            X = torch.randn(n, d, generator=g, dtype=torch.float64)
            p = {"W1": torch.randn(h, d, generator=g, dtype=torch.float64)}
            if intercept:
                p["b1"] = (_relu_safe_biases(p["W1"], X) if act == "relu"
                           else torch.randn(h, generator=g, dtype=torch.float64))
            p["W2"] = torch.randn(K, h, generator=g, dtype=torch.float64)
            if intercept:
                p["b2"] = torch.randn(K, generator=g, dtype=torch.float64)
            A1 = p["W1"] @ X.T + (p["b1"].unsqueeze(1) if intercept else 0.0)
            if act != "relu" or A1.abs().min().item() >= KINK_MARGIN:
                break
        else:  # pragma: no cover - the widest gap of 8 normals is far wider than the margin
            raise RuntimeError("could not place the ReLU check point away from the kink")
        y = torch.randint(0, K, (n,), generator=g)
        yy = F.one_hot(y, K).to(torch.float64) if hot else y
        data = Data(X, yy).to(device, dtype)
        p = {k: v.to(device, dtype) for k, v in p.items()}
        label = (f"n={n} d={d} h={h} K={K} {act}{'' if intercept else ' no-bias'}"
                 f"{f' l2={l2}' if l2 else ''}{' one-hot' if hot else ''}")
        out.append((label, p, data, {"l2": l2, "activation": act}))
    return out
