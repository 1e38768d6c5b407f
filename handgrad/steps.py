"""The import path of Python derivation files (``from handgrad.steps import Step``).

The step verifier itself lives in :mod:`handgrad.verify.steps`; this name stays so that
derivation files written against it keep working.
"""

from handgrad.verify.steps import Derivation, Step, inner

__all__ = ["Derivation", "Step", "inner"]
