"""Fitting: data loading and validation, the one fit pipeline, solvers, chunked sums,
processes, inference."""
