"""Certified reference values that more than one test compares with (independent of handgrad)."""

# NIST Statistical Reference Datasets, Longley (certified to 15 significant digits):
# https://www.itl.nist.gov/div898/strd/lls/data/Longley.shtml  (intercept last)
LONGLEY_COEF = {"GNPDEFL": 15.0618722713733, "GNP": -0.358191792925910e-01,
                "UNEMP": -2.02022980381683, "ARMED": -1.03322686717359,
                "POP": -0.511041056535807e-01, "YEAR": 1829.15146461355,
                "intercept": -3482258.63459582}
LONGLEY_SE = {"GNPDEFL": 84.9149257747669, "GNP": 0.334910077722432e-01,
              "UNEMP": 0.488399681651699, "ARMED": 0.214274163161675,
              "POP": 0.226073200069370, "YEAR": 455.478499142212,
              "intercept": 890420.383607373}
