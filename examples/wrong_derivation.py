"""The same derivation with one mistake (line 4 assumes A symmetric: 2AX), to show a rejection:

    python cli.py derive --file examples/wrong_derivation.py   (exit status 1)

f(X) = tr(X^T A X) + log|X|   (X square and invertible, A any square matrix)

The file format (handgrad/verify/derive.py, FILE_FORMAT):
  loss(P, D)      the function in plain torch: the reference every line is checked against
  inputs(seed)    inputs (P: the variables, a dict of float64 tensors; D: constants); every
                  line is judged at these points and at random moves of their variables,
                  along directions handgrad draws from its own stream
  STEPS           the derivation, one Step per line: plain text, LaTeX, a torch function
                  fn(P, D, dP) giving that line's value along a direction dP, and the rule
  gradient(P, D)  optional: the result, also compared entry by entry with torch.func.grad
  TITLE, LAYOUT   optional: what is printed above the steps

Use random non-symmetric constants: with a symmetric A the mistake "df/dX = 2AX" would pass
(the variables are moved by handgrad; the constants in D are used as given).
"""

import torch

from handgrad.steps import Step

TITLE = "f(X) = tr(X^T A X) + log|X|, with a planted mistake on line 4"
LAYOUT = "denominator: df/dX has the shape of X (n x n)"


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    n = 4
    X = torch.randn(n, n, generator=g, dtype=torch.float64) + n * torch.eye(n, dtype=torch.float64)
    A = torch.randn(n, n, generator=g, dtype=torch.float64)  # not symmetric
    return {"X": X}, {"A": A}


def loss(P, D):
    X, A = P["X"], D["A"]
    return torch.trace(X.T @ A @ X) + torch.linalg.slogdet(X)[1]


def gradient(P, D):
    X, A = P["X"], D["A"]
    return {"X": 2 * A @ X + torch.linalg.inv(X).T}  # the same mistake in the result


STEPS = [
    Step("f = tr(X^T A X) + log|X|",
         r"f = \operatorname{tr}(X^T A X) + \log|X|",
         lambda P, D, dP: torch.trace(P["X"].T @ D["A"] @ P["X"]) + torch.linalg.slogdet(P["X"])[1],
         "the function", kind="value"),
    Step("df = tr(dX^T A X + X^T A dX) + tr(X^-1 dX)",
         r"df = \operatorname{tr}(dX^T A X + X^T A\,dX) + \operatorname{tr}(X^{-1} dX)",
         lambda P, D, dP: torch.trace(dP["X"].T @ D["A"] @ P["X"] + P["X"].T @ D["A"] @ dP["X"])
         + torch.trace(torch.linalg.solve(P["X"], dP["X"])),
         "product rule; d log|X| = tr(X^-1 dX)"),
    Step("df = tr(X^T A^T dX) + tr(X^T A dX) + tr(X^-1 dX)",
         r"df = \operatorname{tr}(X^T A^T dX) + \operatorname{tr}(X^T A\,dX) + \operatorname{tr}(X^{-1} dX)",
         lambda P, D, dP: torch.trace(P["X"].T @ D["A"].T @ dP["X"])
         + torch.trace(P["X"].T @ D["A"] @ dP["X"]) + torch.trace(torch.linalg.solve(P["X"], dP["X"])),
         "tr(B^T) = tr(B) on the first term"),
    Step("df = tr((2 A X + X^-T)^T dX)",
         r"df = \operatorname{tr}\big((2AX + X^{-T})^T dX\big)",
         lambda P, D, dP: ((2 * D["A"] @ P["X"] + torch.linalg.inv(P["X"]).T) * dP["X"]).sum(),
         "collect the terms (WRONG: A^T X + A X = 2AX only for symmetric A)"),
    Step("=> df/dX = 2 A X + X^-T",
         r"\Rightarrow \frac{\partial f}{\partial X} = 2AX + X^{-T}",
         lambda P, D, dP: (gradient(P, D)["X"] * dP["X"]).sum(),
         "read off: df = tr(G^T dX) means df/dX = G"),
]
