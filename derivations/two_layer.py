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

from handgrad.verify.steps import Derivation, Step, inner


def dactivation(A: torch.Tensor, name: str) -> torch.Tensor:
    """sigma'(A), elementwise."""
    if name == "sigmoid":
        return torch.sigmoid(A) * torch.sigmoid(-A)
    if name == "tanh":
        return 1.0 - torch.tanh(A) ** 2
    if name == "relu":
        return (A > 0).to(A.dtype)
    raise ValueError(f"unknown activation {name!r}")


def _backprop_activation(G: torch.Tensor, A: torch.Tensor, H: torch.Tensor,
                         name: str) -> torch.Tensor:
    """G o sigma'(A), in place on G, reusing H = sigma(A) from the forward pass:
    tanh' = 1 - H^2 (as G - (G o H) o H), sigmoid' = H o sigmoid(-A) (accurate at large |A|)."""
    if name == "tanh":
        return G.addcmul_(G * H, H, value=-1.0)
    if name == "sigmoid":
        return G.mul_(H).mul_(torch.sigmoid(-A))
    return G.mul_(dactivation(A, name))


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


# ---- the derivation, step by step ---------------------------------------------------

def _act_name(hp):
    return hp.get("activation", "tanh")


def _G2(P, D, hp):
    return torch.softmax(_forward(P, D, _act_name(hp))[3], 0) - _Y(P, D)


def _dA1(P, D, dP):
    X = D.X.T
    return dP["W1"] @ X + (dP["b1"].unsqueeze(1) if "b1" in P else 0.0)


def _dH1(P, D, dP, hp):
    _, A1, _, _ = _forward(P, D, _act_name(hp))
    return dactivation(A1, _act_name(hp)) * _dA1(P, D, dP)


def _dA2(P, D, dP, hp):
    _, _, H1, _ = _forward(P, D, _act_name(hp))
    out = dP["W2"] @ H1 + P["W2"] @ _dH1(P, D, dP, hp)
    return out + (dP["b2"].unsqueeze(1) if "b2" in P else 0.0)


def _reg(P, dP, hp):
    l2 = hp.get("l2", 0.0)
    return l2 * ((P["W1"] * dP["W1"]).sum() + (P["W2"] * dP["W2"]).sum())


def _db2_term(P, D, dP, hp):
    return (_G2(P, D, hp).sum(1) * dP["b2"]).sum() if "b2" in P else 0.0


def _G1(P, D, hp):
    _, A1, _, _ = _forward(P, D, _act_name(hp))
    return (P["W2"].T @ _G2(P, D, hp)) * dactivation(A1, _act_name(hp))


def derivations() -> list[Derivation]:
    def tr(A, B):  # tr(A^T B)
        return (A * B).sum()

    grad = Derivation(
        title="Two-layer net: backpropagation for dl/dW1, dl/db1, dl/dW2, dl/db2",
        target="loss",
        layout="denominator: dl/dW1 (h, d), dl/db1 (h,), dl/dW2 (K, h), dl/db2 (K,); "
               "samples are columns (the notes' X = [x_1, ..., x_N])",
        steps=[
            Step("l = -sum_i y_i^T log softmax(a_2i) + (l2/2)(||W1||^2 + ||W2||^2),"
                 "  A2 = W2 sigma(W1 X + b1 1^T) + b2 1^T",
                 r"l = -\sum_i y_i^T\log\operatorname{softmax}(a_{2,i}) + \tfrac{\lambda}{2}(\|W_1\|_F^2 + \|W_2\|_F^2),\quad A_2 = W_2\sigma(W_1X + b_1\mathbf{1}^T) + b_2\mathbf{1}^T",
                 lambda P, D, dP, hp: -(_Y(P, D) * torch.log_softmax(_forward(P, D, _act_name(hp))[3], 0)).sum()
                 + 0.5 * hp.get("l2", 0.0) * ((P["W1"] ** 2).sum() + (P["W2"] ** 2).sum()),
                 "the notes' loss, summed over the columns", kind="value"),
            Step("dl = tr((dl/dA2)^T dA2) + l2 tr(W1^T dW1) + l2 tr(W2^T dW2),"
                 "  dl/dA2 = P - Y = [softmax(a_21) - y_1, ..., softmax(a_2N) - y_N]",
                 r"dl = \operatorname{tr}\Big(\frac{\partial l}{\partial A_2}^T dA_2\Big) + \lambda\operatorname{tr}(W_1^TdW_1) + \lambda\operatorname{tr}(W_2^TdW_2),\quad \frac{\partial l}{\partial A_2} = P - Y",
                 lambda P, D, dP, hp: tr(_G2(P, D, hp), _dA2(P, D, dP, hp)) + _reg(P, dP, hp),
                 "worked example 6 applied to each column a_2i (the chain rule through A2)"),
            Step("dl = tr(G2^T dW2 H1) + tr(G2^T W2 dH1) + tr(G2^T db2 1^T) + reg,  G2 = P - Y",
                 r"dl = \operatorname{tr}(G_2^T dW_2 H_1) + \operatorname{tr}(G_2^T W_2 dH_1) + \operatorname{tr}(G_2^T db_2\mathbf{1}^T) + \dots",
                 lambda P, D, dP, hp: tr(_G2(P, D, hp), dP["W2"] @ _forward(P, D, _act_name(hp))[2])
                 + tr(_G2(P, D, hp), P["W2"] @ _dH1(P, D, dP, hp)) + _db2_term(P, D, dP, hp)
                 + _reg(P, dP, hp),
                 "dA2 = dW2 H1 + W2 dH1 + db2 1^T (product rule)"),
            Step("dl = tr((G2 H1^T)^T dW2) + tr((W2^T G2)^T dH1) + tr((G2 1)^T db2) + reg",
                 r"dl = \operatorname{tr}\big((G_2H_1^T)^TdW_2\big) + \operatorname{tr}\big((W_2^TG_2)^TdH_1\big) + \operatorname{tr}\big((G_2\mathbf{1})^Tdb_2\big) + \dots",
                 lambda P, D, dP, hp: tr(_G2(P, D, hp) @ _forward(P, D, _act_name(hp))[2].T, dP["W2"])
                 + tr(P["W2"].T @ _G2(P, D, hp), _dH1(P, D, dP, hp)) + _db2_term(P, D, dP, hp)
                 + _reg(P, dP, hp),
                 "trace trick: tr(A^T dW B) = tr((A B^T)^T dW), tr(A^T W dH) = tr((W^T A)^T dH)"),
            Step("tr((W2^T G2)^T dH1) = tr((W2^T G2)^T (sigma'(A1) o (dW1 X + db1 1^T)))",
                 r"\operatorname{tr}\big((W_2^TG_2)^TdH_1\big) = \operatorname{tr}\big((W_2^TG_2)^T(\sigma'(A_1)\odot(dW_1X + db_1\mathbf{1}^T))\big)",
                 lambda P, D, dP, hp: tr(_G2(P, D, hp) @ _forward(P, D, _act_name(hp))[2].T, dP["W2"])
                 + tr(P["W2"].T @ _G2(P, D, hp),
                      dactivation(_forward(P, D, _act_name(hp))[1], _act_name(hp)) * _dA1(P, D, dP))
                 + _db2_term(P, D, dP, hp) + _reg(P, dP, hp),
                 "dH1 = d sigma(A1) = sigma'(A1) o dA1; dA1 = dW1 X + db1 1^T (X, not the notes' x)"),
            Step("= tr(((W2^T G2) o sigma'(A1))^T (dW1 X + db1 1^T)) = tr((G1 X^T)^T dW1) + tr((G1 1)^T db1)",
                 r"= \operatorname{tr}\big(((W_2^TG_2)\odot\sigma'(A_1))^T(dW_1X + db_1\mathbf{1}^T)\big) = \operatorname{tr}\big((G_1X^T)^TdW_1\big) + \operatorname{tr}\big((G_1\mathbf{1})^Tdb_1\big)",
                 lambda P, D, dP, hp: tr(_G2(P, D, hp) @ _forward(P, D, _act_name(hp))[2].T, dP["W2"])
                 + tr(_G1(P, D, hp) @ D.X, dP["W1"])
                 + ((_G1(P, D, hp).sum(1) * dP["b1"]).sum() if "b1" in P else 0.0)
                 + _db2_term(P, D, dP, hp) + _reg(P, dP, hp),
                 "tr(A^T (B o C)) = tr((A o B)^T C); then the trace trick on dW1 X"),
            Step("=> dl/dW2 = G2 H1^T + l2 W2,  dl/db2 = G2 1,  dl/dW1 = G1 X^T + l2 W1 (the notes "
                 "labels this one dl/dW2),  dl/db1 = G1 1,  G1 = (W2^T G2) o sigma'(A1)",
                 r"\Rightarrow \frac{\partial l}{\partial W_2} = G_2H_1^T + \lambda W_2,\ \frac{\partial l}{\partial b_2} = G_2\mathbf{1},\ \frac{\partial l}{\partial W_1} = G_1X^T + \lambda W_1,\ \frac{\partial l}{\partial b_1} = G_1\mathbf{1}",
                 lambda P, D, dP, hp: inner(gradient(P, D, **hp), dP),
                 "read off: dl = tr(G^T dX) means dl/dX = G"),
        ],
        assumptions=["sigma differentiable at every entry of A1 (for relu: no A1 entry equal "
                     "to 0; the check points keep |A1| >= 0.05)",
                     "y_i one-hot; the notes' single-sample W1 result is dl/dW1, not dl/dW2"],
    )
    return [grad]
