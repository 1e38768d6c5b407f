"""What is derived by hand: one file per model (gradient, Hessian, derivation steps).

Nothing here calls autograd; the checker asserts hand results carry no grad_fn.
"""
