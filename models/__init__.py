"""What is fitted and how: one file per model (loss, parameters, data, closed form).

No hand-written derivatives live here; the loss is plain, stable torch code and is
the autograd reference that derivations/ is checked against.
"""
