"""The notation: one parsed matrix expression per formula, and the verifier of derivations.

    >>> from handgrad.notation import parse, to_latex
    >>> to_latex(parse("tr(X'*A*X) + logdet(X)"))
    '\\\\operatorname{tr}\\\\left(X^{T} A X\\\\right) + \\\\log\\\\lvert X \\\\rvert'

Public API:
    parse(text, declared=None) -> Node              the tree (handgrad.notation.ast)
    to_text / to_latex / to_mathml(node) -> str      printers (to_text round-trips)
    ShapeChecker(env).infer(node)                    dimension analysis
    evaluate(expr, values, diffs=None) -> Tensor     torch, float64, 2-D values
    parse_text(text, path) / parse_file(path)        the .hg derivation format
    verify(derivation, inputs=None, ...) -> dict     the line-by-line verdicts
    derive_text_file(path) -> dict                   parse_file + verify (for the CLI)
    format_text(report) -> str                       the report as terminal text
    NotationError                                    bad input, with file:line:col
"""

from handgrad.notation import operators  # noqa: F401 - fills ast.FUNCTIONS: the table owns each function
from handgrad.notation.ast import Bin, Call, Diff, Neg, Node, Num, Sym, Transpose
from handgrad.notation.evaluate import Evaluator, as_matrix, evaluate
from handgrad.notation.parser import NotationError, parse
from handgrad.notation.render import to_latex, to_mathml, to_text
from handgrad.notation.report import format_latex, format_markdown, format_text
from handgrad.notation.shapes import ShapeChecker, Size, show
from handgrad.notation.textfile import Derivation, parse_file, parse_text
from handgrad.notation.verify import derive_text_file, verify

__all__ = ["Bin", "Call", "Derivation", "Diff", "Evaluator", "Neg", "Node", "NotationError", "Num",
           "ShapeChecker", "Size", "Sym", "Transpose", "as_matrix", "derive_text_file", "evaluate",
           "format_latex", "format_markdown", "format_text", "parse", "parse_file", "parse_text", "show",
           "to_latex", "to_mathml", "to_text", "verify"]
