"""Verification: the step verifier, the three-way checker, the derive command, the identity
catalog and the errata of the notes."""
