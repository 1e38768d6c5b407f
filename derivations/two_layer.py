"""Hand-derived backpropagation for the two-layer net (notes part 3 §6, example 7, method 2).

Samples are the columns of X (d, N), as in the notes; Y (K, N) one-hot columns.

    A1 = W1 X + b1 1^T,  H1 = sigma(A1),  A2 = W2 H1 + b2 1^T,  P = softmax(A2) column-wise
    l  = -sum_i y_i^T log softmax(a_2i) + (l2/2)(||W1||^2 + ||W2||^2)

    dl/dA2 = G2 = P - Y                                       (example 6, column by column)
    dl  = tr(G2^T dA2) + l2 tr(W1^T dW1) + l2 tr(W2^T dW2)
        = tr(G2^T dW2 H1) + tr(G2^T W2 dH1) + tr(G2^T db2 1^T) + ...
        = tr((G2 H1^T)^T dW2) + tr((W2^T G2)^T dH1) + tr((G2 1)^T db2) + ...
    dH1 = sigma'(A1) o (dW1 X + db1 1^T)
    tr((W2^T G2)^T dH1) = tr(((W2^T G2) o sigma'(A1))^T (dW1 X + db1 1^T))
                        = tr((G1 X^T)^T dW1) + tr((G1 1)^T db1),   G1 = (W2^T G2) o sigma'(A1)

    dl/dW2 = G2 H1^T + l2 W2     (K, h)      dl/db2 = G2 1   (K,)
    dl/dW1 = G1 X^T + l2 W1      (h, d)      dl/db1 = G1 1   (h,)

The notes (single-sample part) writes the W1 result, (W2^T (softmax(a) - y)) o sigma'(W1 x) x^T,
under the label dl/dW2: it is dl/dW1 (its shape is h x d, the shape of W1).  The notes'
batch form also writes dW1 x where the batch needs dW1 X.

sigma' is sigmoid(a) sigmoid(-a) for the sigmoid (accurate at large |a|), 1 - tanh(a)^2
for tanh, and 1[a > 0] for relu (relu'(0) taken as 0; checks avoid the kink).  No Hessian
is derived for this model.  Layout: denominator (gradients have the parameter's shape).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from handgrad.verify.in_notation import InNotation


def _backprop_activation(G: torch.Tensor, A: torch.Tensor, H: torch.Tensor,
                         name: str) -> torch.Tensor:
    """G o sigma'(A), in place on G, reusing H = sigma(A) from the forward pass:
    tanh' = 1 - H^2 (as G - (G o H) o H), sigmoid' = H o sigmoid(-A) (accurate at large |A|),
    relu' = 1[A > 0] (relu'(0) taken as 0)."""
    if name == "tanh":
        return G.addcmul_(G * H, H, value=-1.0)
    if name == "sigmoid":
        return G.mul_(H).mul_(torch.sigmoid(-A))
    if name == "relu":
        return G.mul_((A > 0).to(A.dtype))
    raise ValueError(f"unknown activation {name!r}")


def _act(name):
    return {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[name]


def _Y(P, D):
    K = P["W2"].shape[0]
    Y = D.y.to(D.X.dtype) if D.y.dim() == 2 else F.one_hot(D.y.long(), K).to(D.X.dtype)
    return Y.T


def _forward(P, D, act):
    X = D.X.T
    A1 = torch.addmm(P["b1"].unsqueeze(1), P["W1"], X) if "b1" in P else P["W1"] @ X
    H1 = _act(act)(A1)
    A2 = torch.addmm(P["b2"].unsqueeze(1), P["W2"], H1) if "b2" in P else P["W2"] @ H1
    return X, A1, H1, A2


def gradient(params, data, *, l2: float = 0.0, activation: str = "tanh",
             **_) -> dict[str, torch.Tensor]:
    X, A1, H1, A2 = _forward(params, data, activation)
    G2 = torch.softmax(A2, dim=0)  # becomes dl/dA2 = softmax(A2) - Y, (K, N), in place:
    if data.y.dim() == 2:
        G2 -= data.y.to(G2.dtype).T
    else:  # subtract the one-hot columns without forming Y
        G2[data.y.long(), torch.arange(G2.shape[1], device=G2.device)] -= 1.0
    G1 = _backprop_activation(params["W2"].T @ G2, A1, H1, activation)  # dl/dA1, (h, N)
    g = {"W1": G1 @ X.T, "W2": G2 @ H1.T}
    if l2:
        g["W1"] = g["W1"] + l2 * params["W1"]
        g["W2"] = g["W2"] + l2 * params["W2"]
    if "b1" in params:
        g["b1"] = G1.sum(1)
    if "b2" in params:
        g["b2"] = G2.sum(1)
    return {k: g[k] for k in params}


# ---- the derivation, line by line ---------------------------------------------------
# derivations/two_layer.hg (sigmoid, the notes' sigma), two_layer_tanh.hg and
# two_layer_relu.hg: the same backpropagation with each activation, every line parsed and
# verified; `derive two_layer` links each file's read-offs to gradient() above at the check
# problems with its activation (a problem without biases holds them at 0).

def _values(params, data, hp) -> dict:
    """The model's point in the files' names: samples as columns, labels one-hot."""
    W1, W2 = params["W1"], params["W2"]
    return {"X": data.X.T, "Yt": _Y(params, data).T, "W1": W1, "W2": W2,
            "b1": params.get("b1", W1.new_zeros(W1.shape[0])),
            "b2": params.get("b2", W2.new_zeros(W2.shape[0])),
            "l2": W1.new_tensor(float(hp["l2"]))}


NOTATION = tuple(InNotation(f"two_layer{suffix}.hg", _values, absent=("b1", "b2"),
                            when=(("activation", act),))
                 for suffix, act in (("", "sigmoid"), ("_tanh", "tanh"), ("_relu", "relu")))
