"""Coefficients print in the style the input wrote them (issue 22): fractions for one who
wrote 1/2, decimals for one who wrote 0.5; 0.37 never as 37/100, 1/3 never as
0.3333333333333333.  Every printed line still parses back and verifies."""

from __future__ import annotations

from fractions import Fraction as Q

import pytest

from handgrad.notation.auto import derive_expression
from handgrad.notation.canon import decimal, writes_decimals

LET = "x: n; A: n x n"


@pytest.mark.parametrize("expr,grad", [
    ("0.5*x'*A*x", "0.5*(A + A')*x"),           # decimals in, decimals out
    ("1/2*x'*A*x", "1/2*(A + A')*x"),           # a fraction in, a fraction out
    ("x'*A*x/2", "1/2*(A + A')*x"),
    ("0.37*x'*A*x", "0.37*(A + A')*x"),         # not 37/100
    ("0.333*x'*x", "0.666*x"),                  # not 333/500
    ("x'*A*x/3", "1/3*(A + A')*x"),
    ("0.5*x'*A*x/3", "1/6*(A + A')*x"),         # 1/6 has no exact decimal: a fraction even here
    ("x'*x/13", "2/13*x"),
    ("x'*x/100", "0.02*x"),                     # a denominator past 12 with an exact decimal
    ("2.0*x'*x", "4*x"),                        # a whole number is written whole
    ("1.5*x'*x + 0.1*sum(x)", "0.1 + 3*x"),
    ("x'*x + 1e-20*sum(x)", "1e-20 + 2*x"),     # no fraction a person wrote: the number itself
    ("0.5*log(x'*A*x)", "0.5*(A + A')*x/(x'*A*x)"),
    ("1/2*log(x'*A*x)", "(A + A')*x/(2*x'*A*x)"),
])
def test_a_coefficient_is_printed_in_the_inputs_style(expr, grad):
    r = derive_expression(expr, LET, "x")
    assert r["ok"] and r["verdict"] == "verified", (r["first_wrong"], r["first_error"])
    assert r["gradient"]["x"] == grad


@pytest.mark.parametrize("expr,never", [("0.37*x'*A*x", "37/100"), ("0.333*x'*x", "333/"),
                                        ("0.5*x'*A*x", "1/2")])
def test_no_line_of_a_decimal_input_shows_its_number_as_a_fraction(expr, never):
    r = derive_expression(expr, LET, "x", hessian=True)
    assert r["ok"] and r["verdict"] == "verified"
    assert never not in r["hg"]


@pytest.mark.parametrize("texts,want", [
    (("0.5*x'*A*x",), True), (("x/0.25",), True), (("2.5e-3*sum(x)",), True),
    (("1/2*x'*A*x",), False), (("2.0*x'*x",), False), (("x.^2 + A.*B",), False),
    (("1e-20*sum(x)",), False), (("x'*x", "x: n; p = 0.5*x"), True),
])
def test_decimals_are_told_from_what_the_input_wrote(texts, want):
    assert writes_decimals(*texts) is want


@pytest.mark.parametrize("c,decimals,want", [
    (Q(1, 2), False, False), (Q(1, 2), True, True), (Q(37, 100), False, True),
    (Q(1, 3), True, False), (Q(1, 50), False, True), (Q(2, 13), False, False),
    (Q(3), True, False), (Q(1, 10**7), False, True),
])
def test_which_coefficients_print_as_decimals(c, decimals, want):
    assert decimal(c, decimals) is want
