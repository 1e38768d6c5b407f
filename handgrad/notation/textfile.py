"""The plain-text derivation format (``.hg`` files), what a student writes.

    # f(X) = tr(X' A X) + log|X|            the first comment is the title
    let X: n x n invertible                 a variable or constant: shape, then properties
    let A: n x n                            not in wrt: a constant
    let x: n                                a column vector (n x 1);  let a: scalar
    let p = sigma(X*w)                      a named subexpression (shown as p)
    wrt X                                   the variables (several: wrt w, b)
    f  = tr(X'*A*X) + logdet(X)             the function (any name: l = ... then dl = ...)
       = ...                                a rewrite of f's value
    df = tr(dX'*A*X + X'*A*dX) + tr(inv(X)*dX)   # product rule   (the comment is the rule)
       = tr(((A + A')*X + inv(X)')' * dX)   continuation lines start with '='
    d2f = 2*tr(dX'*A*dX)                    optional: the second differential (same dX twice)
    vec(dF) = kron(B', A)*vec(dX)           a matrix-valued F's differential, vectorised (notes part 1 §7)
    grad X = (A + A')*X + inv(X)'           the read-off (also: df/dX = ...)
    hess w = X'*X                           optional: the Hessian (vec convention below)
    jac x = A*diag(exp(x))                  a vector-valued f's Jacobian, numerator layout:
    jacT x = diag(exp(x))*A'                df = J dx, J m x n; jacT the denominator n x m

Sizes are numbers or letters (``3 x 5``, ``n x d``).  Properties: sym, spd, orthogonal,
invertible, diagonal, positive; lower (lower triangular: a Cholesky factor; with
invertible, its diagonal is away from 0); onehot (data: each row one-hot, so Y*vector(1) = 1 — class
labels; a column vector y: one label, 1'*y = 1; a constant, never differentiated).
Read-offs are in the denominator layout: ``grad X`` has
X's shape.  ``hess X`` is the (mn x mn) matrix of second derivatives over vec(X), the
column-major vec of the notes (vec(AXB) = (B^T ⊗ A) vec(X)), so d2f = vec(dX)^T H vec(dX).
After the f line, f itself may be used as a name (``df = -f*x'*dx``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from handgrad.notation.ast import Diff as _Diff
from handgrad.notation.ast import Node, differentials, walk
from handgrad.notation.parser import NotationError, parse
from handgrad.notation.render import to_text
from handgrad.notation.shapes import ONE, SCALAR, Shape, ShapeChecker, Size, show, size

PROPERTIES = ("sym", "spd", "orthogonal", "invertible", "diagonal", "positive", "onehot", "lower")


@dataclass
class Decl:
    name: str
    shape: Shape
    props: frozenset[str]
    source: str

    @property
    def kind(self) -> str:
        if self.shape == SCALAR:
            return "scalar"
        return "vector" if self.shape[1] == ONE else "matrix"


@dataclass
class Line:
    """One checked line.  kind: value, df, d2f, vecdf (vec(df) = ...), grad, hess, jac, jacT."""

    kind: str
    lhs: str
    expr: Node
    text: str
    source: str
    rule: str | None = None
    wrt: str | None = None
    shape_error: str | None = None


@dataclass
class Derivation:
    title: str | None
    decls: dict[str, Decl]
    wrt: list[str]
    fname: str
    f: Node
    f_source: str
    f_text: str
    lines: list[Line]
    defs: dict[str, Node] = field(default_factory=dict)
    def_sources: dict[str, str] = field(default_factory=dict)
    checker: ShapeChecker | None = None
    path: str = "<text>"

    @property
    def letters(self) -> list[str]:
        out: set[str] = set()
        for d in self.decls.values():
            for dim in d.shape:
                out.update(dim.letters)
        return sorted(out)


_VEC_DF = re.compile(r"^vec\(\s*d([A-Za-z_]\w*)\s*\)\s*=(.*)$")
_LET_SHAPE = re.compile(r"^let\s+([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.+)$")
_LET_DEF = re.compile(r"^let\s+([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
_ASSIGN = re.compile(r"^(?:(grad|hess|jacT|jac)\s+([A-Za-z_]\w*)|d([A-Za-z_]\w*)\s*/\s*d([A-Za-z_]\w*)|"
                     r"([A-Za-z_][A-Za-z0-9_]*))\s*=(.*)$")


def _split_comment(raw: str) -> tuple[str, str | None]:
    code, sep, comment = raw.partition("#")
    return code.rstrip(), (comment.strip() or None) if sep else None


def _parse_shape(spec: str, where: str, raw: str) -> tuple[Shape, frozenset[str]]:
    words = spec.replace("×", " x ").split()
    if not words:
        raise NotationError("a declaration needs a shape: n x n, n, or scalar", source=where)
    if words[0] == "scalar":
        shape, rest = SCALAR, words[1:]
    elif len(words) >= 3 and words[1] == "x":
        shape, rest = (size(words[0]), size(words[2])), words[3:]
    else:
        shape, rest = (size(words[0]), ONE), words[1:]
    bad = [w for w in rest if w not in PROPERTIES]
    if bad:
        raise NotationError(f"unknown property {bad[0]!r}; the properties are {', '.join(PROPERTIES)}",
                            source=where)
    for dim in shape:
        if dim.coef < 1:
            raise NotationError(f"a size must be a whole number >= 1 or a letter, got {dim.coef} "
                                f"in {spec.strip()!r} (a letter such as n lets the check pick sizes)",
                                source=where)
    _fits_in_memory(shape, "the declaration", where)
    props = frozenset(rest)
    square = ("sym", "spd", "orthogonal", "invertible", "diagonal", "lower")
    if props & set(square) and shape[0] != shape[1]:
        raise NotationError(f"{'/'.join(sorted(props & set(square)))} needs a square shape, "
                            f"got {show(shape)}", source=where)
    return shape, props


COPIES = 4  # a drawn point, a direction, a tangent and a result per declared or read-off matrix


def _fits_in_memory(shape: Shape, what: str, where: str) -> None:
    """A shape stated in numbers (``let A: 100000 x 100000``) that the check could not hold in
    memory is an error before anything is drawn; sizes with letters are drawn small."""
    from handgrad.errors import memory_problem

    if any(dim.letters for dim in shape):
        return
    entries = shape[0].coef * shape[1].coef
    problem = memory_problem(8 * entries * COPIES, f"{what} ({show(shape)[1:-1]}, {COPIES} "
                             "float64 copies in the check)")
    if problem:
        raise NotationError(f"{problem}: state smaller sizes, or letters (n x n) so the check "
                            "picks small ones", source=where)


def parse_text(text: str, path: str = "<text>") -> Derivation:
    """Read a derivation; syntax errors and unknown names raise NotationError (file:line:col).

    A line whose formula does not conform (or has the wrong shape for its place) is kept
    with ``shape_error`` set: the verifier marks it failed without evaluating it.
    """
    title = None
    decls: dict[str, Decl] = {}
    defs: dict[str, Node] = {}
    def_sources: dict[str, str] = {}
    wrt: list[str] = []
    fname = f = f_source = f_text = None
    lines: list[Line] = []
    checker = ShapeChecker({})
    kind = None
    seen_statement = False

    def formula(body: str, raw: str, where: str) -> Node:
        offset = raw.index(body.strip()) if body.strip() else 0
        names = set(decls) | set(defs)
        try:
            return parse(body.strip(), names)
        except NotationError as e:
            raise e.located(where, raw, offset) from None

    for lineno, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        code, comment = _split_comment(raw)
        stripped = code.strip()
        if not stripped:
            if comment and not seen_statement and title is None:
                title = comment
            continue
        seen_statement = True
        if stripped.startswith("let "):
            m = _LET_DEF.match(stripped)
            if m and not _LET_SHAPE.match(stripped):
                name = m.group(1)
                expr = formula(m.group(2), raw, where)
                _no_diffs(expr, where, raw, "a named subexpression")
                try:
                    checker.env[name] = checker.infer(expr)
                except NotationError as e:
                    raise e.located(where, raw, raw.index(m.group(2).strip())) from None
                defs[name], def_sources[name] = expr, where
                continue
            m = _LET_SHAPE.match(stripped)
            if not m:
                raise NotationError("expected 'let NAME: SHAPE [properties]' or 'let NAME = formula'",
                                    source=where)
            name = m.group(1)
            if name in decls or name in defs:
                raise NotationError(f"{name} is declared twice", source=where)
            shape, props = _parse_shape(m.group(2), where, raw)
            decls[name] = Decl(name, shape, props, where)
            checker.env[name] = shape
            continue
        if stripped.startswith("wrt ") or stripped == "wrt":
            for v in [w.strip() for w in stripped[3:].split(",") if w.strip()]:
                if v not in decls:
                    raise NotationError(f"wrt {v}: {v} is not declared (let {v}: ...)", source=where)
                if "onehot" in decls[v].props:
                    raise NotationError(f"wrt {v}: {v} is onehot (labels, data), which cannot be "
                                        "differentiated", source=where)
                if v not in wrt:
                    wrt.append(v)
            continue
        if stripped.startswith("="):
            if kind is None:
                raise NotationError("a line starting with '=' continues a formula, but none came before",
                                    source=where)
            body = stripped[1:]
            lhs = {"value": fname, "df": "d" + str(fname), "d2f": "d2" + str(fname),
                   "vecdf": f"vec(d{fname})"}.get(kind)
            if lhs is None:
                raise NotationError(f"'=' cannot continue a {kind} line", source=where)
            lines.append(Line(kind, lhs, formula(body, raw, where), body.strip(), where, comment))
            continue
        mv = _VEC_DF.match(stripped)
        if mv:
            if fname is None or mv.group(1) != fname:
                raise NotationError(f"vec(d{mv.group(1)}) = ...: the function is {fname}", source=where)
            kind = "vecdf"
            lines.append(Line(kind, f"vec(d{fname})", formula(mv.group(2), raw, where), mv.group(2).strip(),
                              where, comment))
            continue
        m = _ASSIGN.match(stripped)
        if not m:
            raise NotationError("expected let, wrt, a formula 'f = ...', a differential 'df = ...', "
                                "'= ...' or a read-off 'grad X = ...'", source=where)
        readoff, var, num, den, name, body = m.groups()
        if num is not None:
            if num != fname:
                raise NotationError(f"d{num}/d{den}: the function is {fname}", source=where)
            readoff, var = "grad", den
        if readoff:
            if var not in wrt:
                raise NotationError(f"{readoff} {var}: {var} is not in wrt", source=where)
            lines.append(Line(readoff, f"{readoff} {var}", formula(body, raw, where), body.strip(), where,
                              comment, wrt=var))
            kind = readoff
            continue
        if fname is None and name in decls:
            raise NotationError(f"{name} is a declared variable; name the function f", source=where)
        if fname is None:
            if not wrt:
                raise NotationError("say which variables are differentiated first: wrt X", source=where)
            fname, f_source, f_text = name, where, body.strip()
            f = formula(body, raw, where)
            _no_diffs(f, where, raw, "the function")
            try:
                checker.infer(f)
            except NotationError as e:
                raise e.located(where, raw, raw.index(body.strip())) from None
            defs[fname], def_sources[fname] = f, where
            checker.env[fname] = checker.shape(f)
            kind = "value"
            if comment and title is None:
                title = comment
            continue
        kinds = {"d" + fname: "df", "d2" + fname: "d2f"}
        if name not in kinds:
            raise NotationError(f"{name} = ...: expected d{fname} = ..., d2{fname} = ... or a read-off",
                                source=where)
        kind = kinds[name]
        lines.append(Line(kind, name, formula(body, raw, where), body.strip(), where, comment))

    if f is None:
        raise NotationError("no function: write f = ... after wrt", source=f"{path}")
    deriv = Derivation(title, decls, wrt, fname, f, f_source, f_text, lines, defs, def_sources,
                       checker, path)
    for line in lines:
        _check_line(deriv, line)
    return deriv


def _no_diffs(expr: Node, where: str, raw: str, what: str) -> None:
    for n in walk(expr):
        if isinstance(n, _Diff):
            raise NotationError(f"{what} cannot contain a differential (d{n.name})", raw, None, where)


def _check_line(d: Derivation, line: Line) -> None:
    checker = d.checker
    if d.fname in differentials(line.expr):
        line.shape_error = f"d{d.fname} cannot appear inside a line"
        return
    try:
        got = checker.infer(line.expr)
    except NotationError as e:
        line.shape_error = e.message
        return
    fshape = checker.shape(d.f)
    if line.kind in ("value", "df", "d2f"):
        want, what = fshape, f"{d.fname} is {show(fshape)}"
    elif line.kind == "vecdf":
        want = (fshape[0].times(fshape[1]), ONE)
        what = f"{d.fname} is {show(fshape)}, so vec(d{d.fname}) is {show(want)}"
    elif line.kind in ("jac", "jacT"):
        vshape = d.decls[line.wrt].shape
        rows, cols = fshape[0].times(fshape[1]), vshape[0].times(vshape[1])
        want = (rows, cols) if line.kind == "jac" else (cols, rows)
        what = (f"{d.fname} is {show(fshape)} and {line.wrt} {show(vshape)}: the Jacobian is {show(want)} in "
                f"the {'numerator' if line.kind == 'jac' else 'denominator'} layout")
    else:
        if fshape != SCALAR:
            line.shape_error = (f"{line.lhs}: {d.fname} is {show(fshape)}, not a scalar; "
                                "read-offs need a scalar")
            return
        vshape = d.decls[line.wrt].shape
        if line.kind == "grad":
            want = vshape
            what = (f"{line.wrt} is {show(vshape)}; in the denominator layout the gradient has "
                    f"{line.wrt}'s shape")
        else:
            nn = vshape[0].times(vshape[1])
            want = (nn, nn)
            what = f"the Hessian over vec({line.wrt}) is {show(want)}"
    if line.kind in ("hess", "jac", "jacT"):
        _fits_in_memory(want, f"the {line.lhs} read-off", line.source)
    if not (checker.unify(got[0], want[0]) and checker.unify(got[1], want[1])):
        line.shape_error = f"{line.lhs} = {to_text(line.expr)} is {show(checker.resolve(got))}, but {what}"


def parse_file(path: str) -> Derivation:
    """Read a .hg file: plain UTF-8 text (a binary file is a one-line error naming it)."""
    return parse_text(read_text(path), path=str(path))


def read_text(path: str) -> str:
    """A .hg file's text: plain UTF-8 (a binary file is a one-line error naming it)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotationError(f"{path} is not a text file (byte 0x{raw[exc.start]:02x} at offset "
                            f"{exc.start} is not UTF-8); a .hg derivation is plain text in the "
                            "notation") from None
    if "\x00" in text:
        raise NotationError(f"{path} is not a text file (it holds a NUL byte at offset "
                            f"{text.index(chr(0))}); a .hg derivation is plain text in the "
                            "notation")
    return text.removeprefix("\ufeff")


__all__ = ["Decl", "Derivation", "Line", "PROPERTIES", "Size", "parse_file", "parse_text", "read_text"]
