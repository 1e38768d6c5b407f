"""TOML experiment files for ``cli.py run``: keys mirror the ``fit`` command's flags."""

from __future__ import annotations

import difflib
import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from handgrad.errors import UserError


def load(path: str, valid: dict[str, type | tuple]) -> dict:
    """Read a config, normalise keys (dashes -> underscores), reject unknown keys and wrong
    types naming the valid ones.  ``valid`` maps key -> accepted Python type(s)."""
    if not os.path.exists(path):
        raise UserError(f"Config file not found: {path}")
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML ({exc}).") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file.") from None
    if "fit" in raw and isinstance(raw["fit"], dict) and len(raw) == 1:
        raw = raw["fit"]  # a [fit] table is allowed as well as top-level keys
    out = {}
    for key, value in raw.items():
        k = key.replace("-", "_")
        if k not in valid:
            near = difflib.get_close_matches(k, sorted(valid), n=1, cutoff=0.6)
            hint = f" (did you mean {' or '.join(map(repr, near))}?)" if near else ""
            raise UserError(
                f"{path}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(valid))}."
            )
        want = valid[k]
        types = want if isinstance(want, tuple) else (want,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            names = " or ".join(t.__name__ for t in types)
            raise UserError(f"{path}: key {key!r} must be {names}, got {value!r}.")
        out[k] = value
    if "data" in out and not os.path.isabs(out["data"]):
        # relative to the config file, never to the working directory (a same-named file
        # there must not be fitted instead); shown relative to the current folder when inside
        beside = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)),
                                               out["data"]))
        rel = os.path.relpath(beside)
        out["data"] = beside if rel.startswith("..") else rel
    return out


def loss_keys(cfg: dict, path: str, model: str | None) -> str | None:
    """A config fits a registered ``model`` or a ``loss`` written as an expression (with
    ``wrt``, the coefficient vector's name, default w), not both: the first problem as a
    one-line message, or None."""
    if "loss" in cfg and model is not None:
        return f"{path}: give 'model' or 'loss', not both (model {model!r}, loss {cfg['loss']!r})."
    if "wrt" in cfg and "loss" not in cfg:
        return f"{path}: the key 'wrt' goes with 'loss' (the loss written as an expression)."
    if "loss" in cfg and not str(cfg["loss"]).strip():
        return f"{path}: the key 'loss' is empty; write the loss, e.g. loss = \"sum(exp(X*w)) - y'*X*w\"."
    return None
