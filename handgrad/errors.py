"""Error types the command line maps to exit statuses (DESIGN.md)."""


class UserError(Exception):
    """Bad usage or bad input: the CLI prints the one-line message and exits 2."""


class HandgradWarning(RuntimeWarning):
    """Numerical trouble with a remedy (Newton fallbacks, withheld std errors, ...)."""
