"""handgrad: hand-derived gradients and Hessians, checked against torch.autograd.

Shared machinery lives here, one copy each: the registry pairing models with their
derivations, the three-way checker, the step verifier, the solvers, data loading,
device/dtype selection and configuration.  Per-model code lives in ``models/``
(losses, data, closed forms) and ``derivations/`` (hand-derived derivatives).

Conventions (every model):

* Parameters are an ordered ``dict[str, Tensor]``.  A scalar's gradient has the
  shape of its parameter (denominator layout, what autograd returns).
* Losses are sums over samples, as the seeds write them (the Gaussian MLE is the
  seed's per-sample average).  An optional L2 penalty ``(l2 / 2) * ||w||^2`` acts on
  weights, never on intercepts; its gradient is ``l2 * w`` and its Hessian ``l2 * I``.
* A Hessian over several parameters is 2-D over the parameters flattened in dict
  order (``handgrad.params.flatten``), each parameter flattened row-major.
"""

__version__ = "0.1.0"
