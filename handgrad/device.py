"""Device and dtype selection, shared by every command."""

from __future__ import annotations

import torch

from handgrad.errors import UserError

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda[:N]' without CUDA is an error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {name} was asked for but CUDA is not available on this machine "
                "(torch reports no GPU); use --device cpu or --device auto."
            )
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present."
            )
        return dev
    raise UserError(f"Unknown device {name!r}: use auto, cpu, cuda or cuda:N.")


def resolve_dtype(name: str = "float64") -> torch.dtype:
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise UserError(
            f"Unknown dtype {name!r}: use one of {', '.join(sorted(DTYPES))}."
        ) from None


def set_tf32(enabled: bool) -> None:
    """TF32 changes float32 matmul results on Ampere+ GPUs; checks always turn it off."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
