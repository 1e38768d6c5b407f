"""handgrad: hand-derived gradients and Hessians, checked against torch.autograd, then fitted.

The Python API (handgrad/api.py) mirrors the command line::

    import handgrad
    res = handgrad.fit("logistic", X, y, solver="newton")
    print(res.summary()); res.to_dict()          # == `handgrad fit ... --json`
    handgrad.check_gradient(f, grad, *inputs)    # your own function vs autograd and FD

Layout: ``handgrad.contract`` (what a model and its derivation provide), ``handgrad.registry``
(the one place that pairs them), ``handgrad.verify`` (checker, step verifier, derive, the
identity catalog and the notes' errata), ``handgrad.notation`` (the matrix-expression
notation and its verifier), ``handgrad.fitting`` (data, the one fit pipeline, solvers,
chunked sums, inference), ``handgrad.present`` (text, reports, plots, files),
``handgrad.models`` / ``handgrad.derivations`` (one file per model; models/ and
derivations/ in the repository).

Conventions: parameters are an ordered ``dict[str, Tensor]``; a scalar's gradient has its
parameter's shape (denominator layout); a Hessian is over the parameters flattened in dict
order, each row-major; losses are sums over samples; an L2 penalty (l2/2)||w||^2 acts on
the parameters whose role is penalised (weights), never on intercepts.
"""

__version__ = "0.1.0"

__all__ = ["fit", "check_gradient", "models", "FitResult", "GradientCheck"]


def __getattr__(name):  # the API loads torch only when it is used
    if name in __all__:
        from handgrad import api

        return getattr(api, name)
    raise AttributeError(f"module 'handgrad' has no attribute {name!r}")
