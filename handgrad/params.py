"""Flattening parameter dicts to vectors and back (Hessians are over this order)."""

from __future__ import annotations

import torch

Params = dict[str, torch.Tensor]


def flatten(params: Params) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(vec: torch.Tensor, like: Params) -> Params:
    out: Params = {}
    i = 0
    for name, p in like.items():
        k = p.numel()
        out[name] = vec[i : i + k].reshape(p.shape)
        i += k
    return out


def slices(like: Params) -> dict[str, slice]:
    """Where each parameter sits in the flattened vector."""
    out, i = {}, 0
    for name, p in like.items():
        out[name] = slice(i, i + p.numel())
        i += p.numel()
    return out


def numel(like: Params) -> int:
    return sum(p.numel() for p in like.values())
