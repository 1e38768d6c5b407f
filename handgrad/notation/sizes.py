"""Sizes and shapes, the values dimension analysis computes with (handgrad.notation.shapes
infers them; the operator table's shape rules build them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from handgrad.notation.ast import Call, Num
from handgrad.notation.errors import NotationError


@dataclass(frozen=True)
class Size:
    """coef * the product of ``letters`` (sorted): Size(3), Size(1, ("n",)), Size(1, ("m", "n"))."""

    coef: int
    letters: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = ([str(self.coef)] if self.coef != 1 or not self.letters else []) + list(self.letters)
        return "*".join(parts)

    def times(self, other: Size) -> Size:
        return Size(self.coef * other.coef, tuple(sorted(self.letters + other.letters)))

    def value(self, sizes: dict[str, int]) -> int:
        missing = [k for k in self.letters if k not in sizes]
        if missing:
            raise NotationError(f"{missing[0]} is not the size of any declared name")
        return self.coef * math.prod(sizes[k] for k in self.letters)


@dataclass(frozen=True)
class Unknown:
    id: int

    def __str__(self) -> str:
        return "?"


Dim = Size | Unknown
Shape = tuple[Dim, Dim]
ONE = Size(1)
SCALAR: Shape = (ONE, ONE)


def size(text: str | int) -> Size:
    """'3' -> Size(3), 'n' -> Size(1, ('n',))."""
    text = str(text).strip()
    if text.isdigit():
        return Size(int(text))
    if not text.isidentifier():
        raise NotationError(f"a size is a number or a letter, not {text!r}")
    return Size(1, (text,))


def eye_size(node: Call) -> Size | None:
    """The stated size of eye(n) / eye(3); None for a bare eye (its size from the context)."""
    if not node.args:
        return None
    (a,) = node.args
    return Size(int(a.value)) if isinstance(a, Num) else Size(1, (a.name,))


def show(shape: Shape) -> str:
    return f"({shape[0]} x {shape[1]})"


def is_scalar(shape: Shape) -> bool:
    return shape[0] == ONE and shape[1] == ONE
