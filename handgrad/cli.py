#!/usr/bin/env python3
"""handgrad: hand-derived matrix-calculus gradients, checked against torch.autograd.

Exit status: 0 success; 1 a check failed or a fit did not converge; 2 bad usage or
bad input (a one-line message, no traceback; --debug shows one).
"""

from __future__ import annotations

import functools
import warnings

import click

from handgrad import config, registry
from handgrad.errors import HandgradWarning, UserError
from handgrad.present import io, term

MODEL = click.Choice(sorted(registry.REGISTRY))


def emit_json(obj: dict) -> None:
    click.echo(io.dumps(obj))


def command(fn):
    """Run a command body: UserError -> exit 2 (a non-converged fit returns 1), warnings to stderr.

    Under --json, stdout gets exactly one JSON object (an {"error": ...} object on failure)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        as_json = kwargs.get("as_json", False)
        debug = (ctx.find_root().params or {}).get("debug", False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", HandgradWarning)
            try:
                status = fn(*args, **kwargs) or 0
            except UserError as exc:
                if debug:
                    raise
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if as_json:
                    emit_json({"error": msg, "status": 2})
                click.echo(f"error: {msg}", err=True)
                ctx.exit(2)
            except KeyboardInterrupt:
                if as_json:
                    emit_json({"error": "interrupted", "status": 130})
                click.echo("\ninterrupted", err=True)
                ctx.exit(130)
            except (click.exceptions.Exit, click.ClickException):
                raise
            except Exception as exc:  # a bug or an unforeseen numerical fault: no traceback
                if debug:
                    raise
                first = (str(exc).splitlines() or [""])[0]
                msg = f"internal error ({type(exc).__name__}: {first}); rerun with --debug " \
                      "for the traceback"
                if as_json:
                    emit_json({"error": msg, "status": 1})
                click.echo(f"error: {msg}", err=True)
                ctx.exit(1)
            finally:
                if not as_json:
                    for line in fold_warnings([str(w.message) for w in caught]):
                        click.echo(f"warning: {line}", err=True)
        ctx.exit(status)
    return wrapper


def fold_warnings(messages: list[str]) -> list[str]:
    """One line per distinct warning: repeats that differ only in their numbers (the same
    Newton fallback at successive iterations) fold into the first, naming the iterations."""
    import re

    groups: dict[str, list] = {}
    for msg in messages:
        key = re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", msg)
        it = re.search(r"iteration (\d+)", msg)
        g = groups.setdefault(key, [msg, [], 0])
        g[2] += 1
        if it and g[2] > 1:
            g[1].append(it.group(1))
    out = []
    for first, its, count in groups.values():
        if count == 1:
            out.append(first)
        elif its:
            out.append(f"{first} (again at iteration{'s' if len(its) > 1 else ''} "
                       f"{', '.join(its)})")
        else:
            out.append(f"{first} (repeated {count} times)")
    return out


def common(fn):
    fn = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")(fn)
    fn = click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
                      show_default=True, help="Floating-point precision.")(fn)
    fn = click.option("--device", default="auto", show_default=True,
                      help="auto (CUDA when present), cpu, cuda or cuda:N.")(fn)
    return fn


class JsonAwareGroup(click.Group):
    """Usage errors (bad option, unknown model, wrong value) exit 2 as click prints them;
    when --json was given, stdout still gets exactly one {"error", "status"} object."""

    def parse_args(self, ctx, args):
        ctx.meta["handgrad_json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if ctx.meta.get("handgrad_json"):
                emit_json({"error": exc.format_message().splitlines()[0],
                           "status": exc.exit_code})
            raise


@click.group(cls=JsonAwareGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug):
    """Hand-derived gradients and Hessians, checked against torch.autograd, used to fit data."""


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@command
def list_cmd(as_json):
    """List the models, their solvers and whether a Hessian is derived."""
    out = registry.describe()
    if as_json:
        emit_json(out)
        return
    for m in out["models"]:
        click.echo(f"{m['name']:<15} {m['title']:<28} hessian: {'yes' if m['hessian'] else 'no ':<4}"
                   f" solvers: {', '.join(m['solvers'])}")


@main.command("check")
@click.argument("models", nargs=-1, type=MODEL)
@click.option("--all", "all_", is_flag=True, help="Check every model.")
@click.option("--seed", type=int, default=None, help="One seed instead of the default three.")
@common
@command
def check_cmd(models, all_, seed, device, dtype, as_json):
    """Hand gradient (and Hessian) vs torch.autograd vs central finite differences."""
    names = sorted(registry.REGISTRY) if all_ or not models else list(models)
    seeds = (seed,) if seed is not None else (0, 1, 2)
    from handgrad.verify import checker

    out = checker.check_models(names, device=device, dtype=dtype, seeds=seeds)
    if as_json:
        emit_json(out)
    else:
        _print_check(out)
    return 0 if out["ok"] else 1


def _print_check(out):
    from handgrad.present import render

    click.echo(render.check_text(out))


FIT_OPTIONS = [
    click.option("--newton", is_flag=True, help="Newton's method (same as --solver newton)."),
    click.option("--solver", type=click.Choice(["closed", "newton", "gd", "qr", "normal", "svd",
                                                "sgd", "adam"]),
                 default=None,
                 help="closed form, Newton, or gradient descent (default: the model's); least "
                      "squares also: qr (no refinement), normal (the notes' (X^T X)^-1 X^T y) "
                      "and svd (numpy lstsq), for comparison."),
    click.option("--autograd", is_flag=True,
                 help="Drive the solver with autograd derivatives instead (for comparison)."),
    click.option("--data", "data", type=str, default=None,
                 help="CSV with a header row, .npz with arrays X and y, or X.npy."),
    click.option("--target", type=str, default=None, help="Target column of the CSV."),
    click.option("--features", type=str, default=None,
                 help="Comma-separated feature columns (default: all but the target)."),
    click.option("--no-intercept", is_flag=True, help="Fit without an intercept."),
    click.option("--standardize", is_flag=True,
                 help="Fit on standardized columns; coefficients are reported on the original "
                      "scale (the standardized ones alongside)."),
    click.option("--l2", type=float, default=0.0, show_default=True,
                 help="L2 penalty (l2/2)*||w||^2 on the weights."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed for synthetic data."),
    click.option("--n-samples", type=click.IntRange(min=1), default=None,
                 help="Synthetic data: rows."),
    click.option("--n-features", type=click.IntRange(min=1), default=None,
                 help="Synthetic data: columns."),
    click.option("--max-iter", type=click.IntRange(min=0), default=None, help="Iteration cap."),
    click.option("--tol", type=float, default=None,
                 help="Tolerance: Newton stops when |grad| and the decrement lambda^2/2 are <= tol, "
                 "or when the decrement is at the loss's resolution; gd stops when "
                 "|grad / column scale| <= tol (default 1e-8 in float64, 1e-3 in float32)."),
    click.option("--tf32", is_flag=True, help="Allow TF32 matmuls on CUDA for fits."),
    click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
                 help="Sum loss/gradient/Hessian over row chunks of this size; .npy/.npz "
                      "data is then streamed from disk (memory O(chunk*d + d^2))."),
    click.option("--distributed", is_flag=True,
                 help="Under torchrun: each process fits its rows, sums are all-reduced."),
    click.option("--hessian-dtype", type=click.Choice(["float64", "float32"]), default=None,
                 help="Form the Newton Hessian in float32 (gradient, solution stay float64)."),
    click.option("--hidden", type=click.IntRange(min=1), default=None,
                 help="two_layer: hidden units (default 32)."),
    click.option("--activation", type=click.Choice(["sigmoid", "tanh", "relu"]), default=None,
                 help="two_layer: hidden activation (default tanh)."),
    click.option("--epochs", type=click.IntRange(min=1), default=None,
                 help="sgd/adam: passes over the training rows (default 30)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="sgd/adam: rows per minibatch (default 32)."),
    click.option("--lr", type=float, default=None,
                 help="sgd/adam: learning rate (default 0.01 for sgd, 1e-3 for adam)."),
    click.option("--test-fraction", type=float, default=None,
                 help="Hold out this fraction of rows (seeded; stratified for labels) and report "
                      "held-out accuracy / log-likelihood (default 0.2 for classifiers)."),
    click.option("--plot", "plot", type=str, default=None, metavar="FILE.png",
                 help="Write the convergence plot (loss - best loss and |grad| per iteration, "
                      "log scales); needs matplotlib: pip install 'handgrad[plot]'."),
    click.option("--compare", is_flag=True,
                 help="Also fit by Newton, gradient descent and (for reference) autograd "
                      "L-BFGS on the same data and start; with --plot, all on one figure."),
    click.option("--quiet", "-q", is_flag=True,
                 help="Print only the result (no iteration lines); --json has the full history."),
    click.option("--all-iterations", is_flag=True,
                 help="Print every iteration line (default: the first and last few, and every "
                      "k-th between, when there are more than 25)."),
]


def fit_options(fn):
    for opt in reversed(FIT_OPTIONS):
        fn = opt(fn)
    return fn


@main.command("fit")
@click.argument("model", type=MODEL, required=False)
@click.option("--loss", "loss_expr", default=None, metavar="EXPR",
              help="Fit this loss instead of a MODEL, in the notation: e.g. \"sum(exp(X*w)) - "
              "y'*X*w\" (X the design matrix, y the target); handgrad derives and verifies its "
              "gradient and Hessian first, and refuses to fit if a line is not verified.")
@click.option("--wrt", "loss_wrt", default=None, metavar="NAME",
              help="With --loss: the coefficient vector's name (default w).")
@fit_options
@common
@command
def fit_cmd(model, newton, solver, autograd, data, target, features, no_intercept, standardize,
            l2, seed,
            n_samples, n_features, max_iter, tol, tf32, device, dtype, as_json, hidden=None,
            activation=None, epochs=None, batch_size=None, lr=None, test_fraction=None,
            chunk_rows=None, distributed=False, hessian_dtype=None, plot=None, compare=False,
            quiet=False, all_iterations=False, loss_expr=None, loss_wrt=None):
    """Fit MODEL (or a loss written as an expression, --loss) with its hand-derived
    gradient (and Hessian)."""
    if newton and solver not in (None, "newton"):
        raise UserError(f"--newton conflicts with --solver {solver}; pass one of them.")
    if loss_expr is not None or loss_wrt is not None:
        return _fit_loss(model, loss_expr, loss_wrt, locals())
    if model is None:
        raise UserError("fit needs a MODEL (one of "
                        f"{', '.join(sorted(registry.REGISTRY))}) or --loss EXPR.")
    if plot:  # before any work: matplotlib present, folder writable, iterations to draw
        from handgrad.present import plot as plots

        plots.preflight(plot, solver or ("newton" if newton else
                                         registry.get(model).model.default_solver), compare)
    feats = [f.strip() for f in features.split(",") if f.strip()] if features else None
    fit_kw = dict(data_path=data, target=target, features=feats, intercept=not no_intercept,
                  l2=l2, standardize=standardize, device=device, dtype=dtype, seed=seed,
                  n_samples=n_samples, n_features=n_features, max_iter=max_iter, tol=tol,
                  tf32=tf32, test_fraction=test_fraction, chunk_rows=chunk_rows,
                  distributed_run=distributed, hessian_dtype=hessian_dtype,
                  hyper={k: v for k, v in (("hidden", hidden), ("activation", activation),
                                           ("epochs", epochs), ("batch_size", batch_size),
                                           ("lr", lr)) if v is not None})
    from handgrad.fitting import pipeline

    out = pipeline.fit(model, solver="newton" if newton else solver, autograd=autograd,
                       progress=term.enabled(as_json), **fit_kw)
    if (out.get("distributed") or {}).get("rank", 0):  # under torchrun only rank 0 prints
        return 0 if out["converged"] else 1
    if compare:
        from handgrad.fitting import compare as comparison

        out["compare"] = comparison.run(model, done=out, progress=term.enabled(as_json),
                                        **fit_kw)
    if plot:
        out["plot"] = plots.fit_figure(out, plot, tol=tol)
    if as_json:
        emit_json(out)
    else:
        _print_fit(out, iterations="none" if quiet else "all" if all_iterations else "capped")
        if compare:
            click.echo("\nsame data and start, each solver (loss - best: against the best of "
                       "all runs):")
            click.echo(comparison.table(out["compare"]))
        if plot:
            click.echo(f"\nplot: {plot}")
    if out.get("interrupted"):
        click.echo(f"interrupted: {out['model']} stopped at iteration {out['iterations']} "
                   f"with loss {out['loss']:.10g}, |g| {out['grad_norm']:.3e} (the parameters "
                   "reached are reported above)", err=True)
        return 130
    if not out["converged"]:
        click.echo(f"error: {out['model']} did not converge: {out['message']} "
                   f"(reached loss {out['loss']:.10g}, |g| {out['grad_norm']:.3e} after "
                   f"{out['iterations']} iterations)", err=True)
        return 1
    return 0


def _fit_loss(model, expr, wrt, opts: dict) -> int:
    """fit --loss EXPR --wrt w: derive, verify (refuse when a line is not verified: exit 1),
    then fit through the one pipeline (handgrad/fitting/expression.py)."""
    if model is not None:
        raise UserError(f"fit takes a MODEL or --loss, not both (got {model} and --loss).")
    if not expr:
        raise UserError("--wrt goes with --loss EXPR (the loss written as an expression).")
    if not opts["data"]:
        raise UserError("fit --loss needs data: --data FILE (a CSV with --target, .npz, .npy).")
    for flag, given in (("--compare", opts["compare"]), ("--autograd", opts["autograd"]),
                        ("--plot", opts["plot"]), ("--standardize", opts["standardize"])):
        if given:
            raise UserError(f"{flag} is not available with --loss yet.")
    unused = [f"--{k.replace('_', '-')}" for k in ("hidden", "activation", "n_samples",
                                                    "n_features")
              if opts[k] is not None]
    if unused:
        raise UserError(f"{', '.join(unused)} do(es) not apply to --loss.")
    from handgrad.fitting import expression

    feats = [f.strip() for f in opts["features"].split(",") if f.strip()] \
        if opts["features"] else None
    as_json = opts["as_json"]
    try:
        out = expression.fit(
            expr, wrt or "w", data_path=opts["data"], target=opts["target"], features=feats,
            intercept=not opts["no_intercept"], solver="newton" if opts["newton"] else
            opts["solver"], l2=opts["l2"], device=opts["device"], dtype=opts["dtype"],
            seed=opts["seed"], max_iter=opts["max_iter"], tol=opts["tol"], tf32=opts["tf32"],
            test_fraction=opts["test_fraction"], chunk_rows=opts["chunk_rows"],
            distributed_run=opts["distributed"], hessian_dtype=opts["hessian_dtype"],
            hyper={k: opts[k] for k in ("epochs", "batch_size", "lr") if opts[k] is not None},
            progress=term.enabled(as_json))
    except expression.NotVerified as exc:
        if as_json:
            emit_json({"error": str(exc), "status": 1, "derivation": exc.report})
        else:
            from handgrad import notation

            click.echo(notation.format_text(exc.report), err=True)
        click.echo(f"error: {exc}", err=True)
        return 1
    if (out.get("distributed") or {}).get("rank", 0):
        return 0 if out["converged"] else 1
    if as_json:
        emit_json(out)
    else:
        le = out["loss_expression"]
        click.echo(f"loss {le['expression']} over {le['wrt']}: gradient {le['gradient']}"
                   + (f", Hessian {le['hessian']}" if le["hessian"] else "")
                   + f" ({le['verdict']}: every line of the derivation checked at "
                   f"{len(le['checked_at'])} drawn points"
                   + (" and at the data's first rows" if le["checked_at_data"] else "") + ")")
        if le["intercept"]:
            click.echo(f"intercept: {le['intercept']}")
        quiet, every = opts["quiet"], opts["all_iterations"]
        _print_fit(out, iterations="none" if quiet else "all" if every else "capped")
    if out.get("interrupted"):
        return 130
    if not out["converged"]:
        click.echo(f"error: the loss did not converge: {out['message']} (reached loss "
                   f"{out['loss']:.10g}, |g| {out['grad_norm']:.3e} after {out['iterations']} "
                   "iterations)", err=True)
        return 1
    return 0


def _print_fit(out, iterations: str = "capped"):
    from handgrad.present import render

    click.echo(render.fit_text(out, iterations=iterations))


def _fit_key_types() -> dict:
    """Config keys accepted by `run`: the fit command's options plus `model`."""
    types = {"model": str, "loss": str, "wrt": str}  # loss/wrt: fit --loss/--wrt
    for p in fit_cmd.params:
        if p.name in ("as_json", "loss_expr", "loss_wrt"):
            continue
        if isinstance(p, click.Option) and p.is_flag:
            types[p.name] = bool
        elif isinstance(p.type, click.types.FloatParamType):
            types[p.name] = float
        elif isinstance(p.type, click.types.IntParamType):
            types[p.name] = int
        else:
            types[p.name] = str
    types["intercept"] = bool  # `intercept = false` reads better than `no_intercept = true`
    types.pop("no_intercept", None)
    types["features"] = (str, list)
    return types


def _check_config_values(ctx, cfg: dict, path: str) -> str | None:
    """Run each config value through its `fit` option's click type (choices, ranges), as
    the command line would; returns the first problem as a one-line message."""
    params = {p.name: p for p in fit_cmd.params}
    for key, value in cfg.items():
        p = params.get(key)
        if p is None or isinstance(value, (bool, list)) or p.type in (click.STRING,):
            continue
        try:
            cfg[key] = p.type.convert(value, p, ctx)
        except click.BadParameter as exc:
            return f"{path}: key {key!r}: {exc.message}"
    return None


@main.command("bench")
@click.option("--quick", is_flag=True, help="Small sizes (seconds); default: the issue's sizes.")
@click.option("--out", "out_dir", default="bench-results", show_default=True,
              help="Folder for bench.md (markdown table) and bench.json, made in the current "
              "folder; the committed table is refreshed only with --out benchmarks/results.")
@click.option("--only", multiple=True, help="Run only these sections (repeatable): machine, "
              "startup, logistic, job, hessian, gradients, derived, least_squares, covariance, "
              "mixed.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for torch and numpy's BLAS (1 is fair on a loaded machine).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@command
def bench_cmd(quick, out_dir, only, threads, as_json):
    """Time hand derivatives against autograd and peers; write a markdown table and JSON."""
    from handgrad.bench import bench

    bad = [s for s in only if s not in bench.SECTIONS]
    if bad:
        raise UserError(f"--only {bad[0]!r}: choose from {', '.join(bench.SECTIONS)}.")
    res = bench.run(quick, tuple(only), threads=threads,
                    log=lambda s: click.echo(s, err=True))
    md, js = bench.write(res, out_dir)
    res["files"] = {"markdown": md, "json": js}
    if as_json:
        emit_json(res)
    else:
        click.echo(bench.markdown(res) + f"\nwritten: {md}, {js}")
    return 0


@main.command("run")
@click.argument("config_path", metavar="CONFIG.toml", type=str)
@click.option("--device", default=None, help="Override the config's device.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default=None,
              help="Override the config's dtype.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_context
def run_cmd(ctx, config_path, device, dtype, as_json):
    """Run a TOML experiment file (keys mirror `fit`'s flags; flags given here win)."""
    try:
        cfg = config.load(config_path, _fit_key_types())
    except UserError as exc:
        if as_json:
            emit_json({"error": str(exc), "status": 2})
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    model = cfg.pop("model", None)
    problem = config.loss_keys(cfg, config_path, model)  # loss = "..." (+ wrt) or a model
    if problem:
        pass
    elif "loss" in cfg:  # fit --loss: the expression's derivation is verified before the fit
        cfg["loss_expr"], cfg["loss_wrt"] = cfg.pop("loss"), cfg.pop("wrt", None)
        problem = _check_config_values(ctx, cfg, config_path)
    elif model is None:
        problem = (f"{config_path}: the key 'model' is required "
                   f"(one of {', '.join(sorted(registry.REGISTRY))}), or 'loss'.")
    elif model not in registry.REGISTRY:
        problem = (f"{config_path}: unknown model {model!r}; "
                   f"available: {', '.join(sorted(registry.REGISTRY))}.")
    else:
        problem = _check_config_values(ctx, cfg, config_path)
    if problem:
        if as_json:
            emit_json({"error": problem, "status": 2})
        click.echo(f"error: {problem}", err=True)
        ctx.exit(2)
    if "intercept" in cfg:
        cfg["no_intercept"] = not cfg.pop("intercept")
    if isinstance(cfg.get("features"), list):
        cfg["features"] = ",".join(map(str, cfg["features"]))
    for key, value in (("device", device), ("dtype", dtype)):
        if value is not None:
            cfg[key] = value
    cfg["as_json"] = as_json or cfg.get("as_json", False)
    ctx.invoke(fit_cmd, model=model, **cfg)  # click fills the flags the file leaves out


def _deep(fn):
    """fn where formulas as deep as the notation reads (a 5,000-term sum) can be walked."""
    from handgrad.notation.ast import deep
    return deep(fn)


@main.command("derive")
@click.argument("model", type=MODEL, required=False)
@click.option("--file", "file_", type=str, default=None, metavar="FILE",
              help="Check your own derivation: a plain-text .hg file in the notation "
              "(examples/trace_logdet.hg) or a Python file (examples/my_derivation.py).")
@click.option("--all", "all_", is_flag=True, help="Every registered model.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "latex"]),
              default="text", show_default=True, help="How to print the derivation.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the check problems and directions (a --file uses its SEEDS).")
@click.option("--expr", default=None, metavar="EXPR",
              help="Derive this scalar expression yourself, in the notation: e.g. "
              "\"tr(X'*A*X) + logdet(X)\" (needs --let and --wrt).")
@click.option("--let", "let_", default=None, metavar="DECLS",
              help="With --expr: declarations, e.g. \"X: n x n invertible; A: n x n\".")
@click.option("--wrt", default=None, metavar="VARS", help="With --expr: variables, e.g. w,b.")
@click.option("--hessian", is_flag=True, help="With --expr: also the Hessian (one vector variable).")
@click.option("--emit", type=click.Choice(["torch"]), default=None,
              help="With --expr: print a standalone torch function for the derived gradient.")
@click.option("--at", "at_path", type=str, default=None, metavar="FILE.npz",
              help="With --expr or a .hg --file: evaluate the gradient (and Hessian) at your "
              "arrays, one per declared name (1-D arrays are column vectors), and verify there too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@command
def derive_cmd(model, file_, all_, fmt, seed, expr, let_, wrt, hessian, emit, as_json,
               at_path=None):
    """Print a derivation step by step, each line verified against torch.func.jvp."""
    from handgrad.verify import derive

    if sum(bool(x) for x in (model, file_, all_, expr)) != 1:
        raise UserError("derive needs exactly one of MODEL, --all, --file FILE or --expr EXPR "
                        f"(models: {', '.join(sorted(registry.REGISTRY))}).")
    if at_path and not (expr or (file_ and not file_.endswith(".py"))):
        raise UserError("--at FILE.npz goes with --expr EXPR or --file F.hg.")
    if expr:
        return _derive_expr(expr, let_, wrt, hessian, emit, fmt, as_json, at_path)
    if let_ or wrt or hessian or emit:
        raise UserError("--let, --wrt, --hessian and --emit go with --expr.")
    if file_ and not file_.endswith(".py"):  # the plain-text notation (examples/*.hg)
        return _derive_text(file_, fmt, as_json, at_path)
    if file_:
        out = derive.derive_file(file_)
    elif all_:
        out = derive.derive_models(sorted(registry.REGISTRY), seed=seed)
    else:
        out = derive.derive_entry(registry.get(model), seed=seed)
    if as_json:
        emit_json(out)
    elif fmt == "markdown":
        click.echo(derive.format_markdown(out), nl=False)
    elif fmt == "latex":
        click.echo(derive.format_latex(out), nl=False)
    else:
        click.echo(derive.format_text(out, ascii_only=not derive.stdout_is_unicode()))
    return 0 if out["ok"] else 1


@_deep
def _derive_expr(expr, let_, wrt, hessian, emit, fmt, as_json, at_path=None) -> int:
    """derive --expr: handgrad writes the derivation in the notes' steps, the one verifier
    checks every line it wrote."""
    from handgrad import notation
    from handgrad.notation.auto import derive_expression, emit_torch

    if not wrt:
        raise UserError("--expr needs --wrt (the variables to differentiate by, e.g. --wrt X).")
    try:
        out = derive_expression(expr, let_ or "", wrt, hessian=hessian)
        code = emit_torch(out) if emit else None
        if at_path:
            out = _at(out, notation.parse_text(out["hg"], path="<derived>"), at_path)
    except notation.NotationError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    if code is not None:
        out["torch"] = code
    out["path"] = f"wrt {wrt}"
    _print_notation(out, fmt, as_json)
    if code is not None and not as_json:
        click.echo("\n# --emit torch\n" + code)
    return 0 if out["ok"] else 1


def _at(report: dict, derivation, path: str) -> dict:
    """derive --at FILE.npz: the read-offs at the user's arrays, verified there too."""
    from handgrad.notation.auto_at import at

    return at(report, derivation, path)


def _print_notation(out: dict, fmt: str, as_json: bool) -> None:
    from handgrad import notation

    if as_json:
        emit_json(out)
    elif fmt == "markdown":
        click.echo(notation.format_markdown(out), nl=False)
    elif fmt == "latex":
        click.echo(notation.format_latex(out), nl=False)
    else:
        click.echo(notation.format_text(out))
    if "checked_at_given" in out and not as_json:  # derive --at
        from handgrad.notation.auto_at import format_at

        click.echo(format_at(out))


@_deep
def _derive_text(path: str, fmt: str, as_json: bool, at_path: str | None = None) -> int:
    """derive --file F.hg: parse the notation file, verify every line, print it."""
    import os

    from handgrad import notation

    if not os.path.exists(path):
        raise UserError(f"Derivation file not found (no such file): {path}")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; --file takes a .hg text file or a .py file.")
    try:
        out = notation.derive_text_file(path)
        if at_path:
            out = _at(out, notation.parse_file(path), at_path)
    except notation.NotationError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    _print_notation(out, fmt, as_json)
    return 0 if out["ok"] else 1


@main.command("identities")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@command
def identities_cmd(as_json):
    """Check the notes' matrix-calculus catalog numerically and show the notes' errata rejected."""
    from handgrad.verify import derive

    out = derive.identities_report()
    if as_json:
        emit_json(out)
    else:
        click.echo(derive.format_identities(out, ascii_only=not derive.stdout_is_unicode()))
    return 0 if out["ok"] else 1


@main.command("report")
@click.argument("models", nargs=-1, type=MODEL)
@click.option("--all", "all_", is_flag=True, help="Every model, plus an index page.")
@click.option("--out", "out_dir", default="reports", show_default=True,
              help="Folder for the pages (created if missing; files in it are replaced whole).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the check problems, step directions and synthetic data.")
@click.option("--no-plots", is_flag=True, help="Skip the convergence plots (no matplotlib needed).")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@command
def report_cmd(models, all_, out_dir, seed, no_plots, device, as_json):
    """One page per model (Markdown and HTML): the derivation with each step's verdict, the
    check table (hand vs autograd vs finite differences), a fit and its convergence plot."""
    from handgrad.present import report

    out = report.run(list(models), out_dir=out_dir, all_models=all_, seed=seed, device=device,
                     plots=not no_plots, progress=term.enabled(as_json))
    if as_json:
        emit_json(out)
    else:
        click.echo(report.summary_table(out))
        first = out["index"][1] if out["index"] else out["files"][1]
        click.echo(f"\nwrote {len(out['files'])} files to {out_dir}/; open {first}")
    if not out["ok"]:
        bad = [m for m, r in out["models"].items() if not r["ok"]]
        click.echo(f"error: the pages are written, but {', '.join(bad)} did not pass "
                   "(see the verdicts on the page)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    main()
