#!/usr/bin/env python3
"""handgrad: hand-derived matrix-calculus gradients, checked against torch.autograd.

Exit status: 0 success; 1 a check failed or a fit did not converge; 2 bad usage or
bad input (a one-line message, no traceback; --debug, before or after the command, shows
one); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import signal
import sys


def _interrupted_while_starting(signum, frame):  # pragma: no cover - timing
    sys.stderr.write("\ninterrupted\n")
    raise SystemExit(130)


try:  # Ctrl-C while this module's imports run: exit 130 quietly (handed back at its end)
    _STARTING = signal.getsignal(signal.SIGINT) is signal.default_int_handler and \
        signal.signal(signal.SIGINT, _interrupted_while_starting) is not None
except ValueError:  # not the main thread: leave signals alone
    _STARTING = False

import difflib  # noqa: E402
import functools  # noqa: E402
import re  # noqa: E402
import warnings  # noqa: E402

import click  # noqa: E402

from handgrad import __version__, config, registry  # noqa: E402
from handgrad.errors import HandgradWarning, UserError, memory_problem  # noqa: E402
from handgrad.present import io, term  # noqa: E402

MODELS_HELP = ", ".join(sorted(registry.REGISTRY))
SEED = click.IntRange(0, 2**32 - 1)  # what every seeded generator here (torch, numpy) accepts


class ModelName(click.ParamType):
    """A registered model's name, shown as MODEL in usage lines; a misspelled one gets the
    nearest names (``logisitc``: did you mean 'logistic'?)."""

    name = "model"

    def get_metavar(self, param, ctx=None):
        return "MODEL"

    def convert(self, value, param, ctx):
        if value in registry.REGISTRY:
            return value
        near = difflib.get_close_matches(str(value), sorted(registry.REGISTRY), n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, near))}?" if near else f"the models: {MODELS_HELP}"
        self.fail(f"unknown model {value!r}; {hint}", param, ctx)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(n) for n in sorted(registry.REGISTRY) if n.startswith(incomplete)]


MODEL = ModelName()


def needs_model(command: str, extra: str = "") -> UserError:
    """The one rule for `check`, `derive` and `report`: name the model(s), or --all."""
    return UserError(f"{command} needs a MODEL ({MODELS_HELP}) or --all{extra}.")


def _debugging(ctx) -> bool:
    root = ctx.find_root()
    return bool(root.meta.get("handgrad_debug") or (root.params or {}).get("debug"))


def _remember_debug(ctx, param, value):
    if value:
        ctx.find_root().meta["handgrad_debug"] = True
    return value


def _debug_option() -> click.Option:
    return click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_remember_debug,
                        help="Show the traceback of an error (also accepted before the command).")


_ALLOC = re.compile(r"(?:tried to allocate|Tried to allocate|Unable to allocate)\s+([\d.]+\s*\w+)")


def _out_of_memory(exc: BaseException) -> str | None:
    """An allocation that failed (torch's CPU or CUDA allocator, numpy): a one-line message."""
    text = str(exc)
    oom = isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in text
                                           or "out of memory" in text.lower()))
    if not oom:
        return None
    m = _ALLOC.search(text)
    size = m.group(1) if m else None
    if size and size.split()[-1] == "bytes" and size.split()[0].isdigit():
        from handgrad.errors import human_bytes

        size = human_bytes(int(size.split()[0]))
    return ("out of memory" + (f": the computation tried to allocate {size} at once" if size else "")
            + "; use smaller sizes (rows, columns, --hidden, the sizes in a derivation)")


def emit_json(obj: dict) -> None:
    click.echo(io.dumps(obj))


def command(fn):
    """Run a command body: UserError -> exit 2 (a non-converged fit returns 1), warnings to stderr.

    Under --json, stdout gets exactly one JSON object (an {"error": ...} object on failure)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        as_json = kwargs.get("as_json", False)
        debug = _debugging(ctx)
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
                oom = _out_of_memory(exc)
                if oom:  # a size too large to hold, found by the allocator: a user's remedy
                    if as_json:
                        emit_json({"error": oom, "status": 2})
                    click.echo(f"error: {oom}", err=True)
                    ctx.exit(2)
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


def interrupted(as_json: bool = False):
    """Ctrl-C outside a command's own handling (while parsing, importing, starting): exit
    130 with one line, as a command does."""
    if as_json:
        emit_json({"error": "interrupted", "status": 130})
    click.echo("\ninterrupted", err=True)
    return click.exceptions.Exit(130)


class OneLineError(click.ClickException):
    """A usage error (bad option, unknown model, value out of range) shown as every other
    error is: one 'error: ...' line on stderr naming the help to read, exit 2."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", err=True)


def _one_line(exc: click.ClickException) -> click.ClickException:
    if isinstance(exc, OneLineError) or type(exc).__name__ == "NoArgsIsHelpError":
        return exc
    msg = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        msg = msg.rstrip(".") + f" (see '{ctx.command_path} --help')."
    return OneLineError(msg, exc.exit_code)


class JsonAwareGroup(click.Group):
    """Usage errors (bad option, unknown model, wrong value) exit 2 with one 'error: ...'
    line, like every other error; when --json was given, stdout still gets exactly one
    {"error", "status"} object.  Every command also takes --debug after its name; Ctrl-C
    anywhere exits 130."""

    def add_command(self, cmd, name=None):
        if not any(p.name == "debug" for p in cmd.params):
            cmd.params.append(_debug_option())
        super().add_command(cmd, name)

    def parse_args(self, ctx, args):
        ctx.meta["handgrad_json"] = "--json" in args
        try:
            return super().parse_args(ctx, args)
        except KeyboardInterrupt:
            raise interrupted(ctx.meta["handgrad_json"]) from None
        except click.ClickException as exc:
            exc = _one_line(exc)
            if ctx.meta.get("handgrad_json") and isinstance(exc, OneLineError):
                emit_json({"error": exc.format_message(), "status": exc.exit_code})
            raise exc from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise interrupted(ctx.meta.get("handgrad_json", False)) from None
        except click.ClickException as exc:
            exc = _one_line(exc)
            if ctx.meta.get("handgrad_json"):
                emit_json({"error": exc.format_message(), "status": exc.exit_code})
            raise exc from None


@click.group(cls=JsonAwareGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=f"MODEL is one of: {MODELS_HELP}.")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
              callback=_remember_debug,
              help="Show the traceback of an error (also accepted after the command).")
@click.version_option(__version__, "--version", "-V", prog_name="handgrad",
                      message="%(prog)s %(version)s")
def main():
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
@click.option("--seed", type=SEED, default=None, help="One seed instead of the default three.")
@common
@command
def check_cmd(models, all_, seed, device, dtype, as_json):
    """Hand gradient (and Hessian) vs torch.autograd vs central finite differences, for
    each MODEL named (or every model with --all)."""
    if not models and not all_:
        raise needs_model("check")
    names = sorted(registry.REGISTRY) if all_ else list(dict.fromkeys(models))
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
                 help="CSV with a header row (gzip'd too: F.csv.gz), .npz with arrays X and y, "
                      "or X.npy."),
    click.option("--target", type=str, default=None,
                 help="Target column of the CSV (text labels such as yes/no are re-encoded "
                      "for classifiers, and the output says which is 1)."),
    click.option("--features", type=str, default=None,
                 help="Comma-separated feature columns (default: all but the target)."),
    click.option("--exclude", type=str, default=None, metavar="COLS",
                 help="Comma-separated columns to leave out (an ID or a text column)."),
    click.option("--dropna", is_flag=True,
                 help="Drop rows with a missing value (empty, NA, NaN, ...) in a used column "
                      "and say how many (default: a missing value is an error naming it)."),
    click.option("--no-intercept", is_flag=True, help="Fit without an intercept."),
    click.option("--standardize", is_flag=True,
                 help="Fit on standardized columns; coefficients are reported on the original "
                      "scale (the standardized ones alongside)."),
    click.option("--l2", type=float, default=0.0, show_default=True,
                 help="L2 penalty (l2/2)*||w||^2 on the weights."),
    click.option("--seed", type=SEED, default=0, show_default=True,
                 help="Seed for synthetic data (0 to 2^32 - 1)."),
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
                 help="Sum loss/gradient/Hessian (the Gaussian's closed form: mean and "
                      "covariance) over row chunks of this size; .npy/.npz data is then "
                      "streamed from disk (memory O(chunk*d + d^2))."),
    click.option("--distributed", is_flag=True,
                 help="Under torchrun (refused without it): each process fits its rows, sums "
                      "are all-reduced."),
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


LOSS_OPTIONS = [
    click.option("--loss", "loss_expr", default=None, metavar="EXPR",
                 help="Fit this loss instead of a MODEL, in the notation: e.g. \"sum(exp(X*w)) - "
                 "y'*X*w\" (X the design matrix, y the target); handgrad derives and verifies its "
                 "gradient and Hessian first, and refuses to fit if a line is not verified."),
    click.option("--wrt", "loss_wrt", default=None, metavar="NAME",
                 help="With --loss: the coefficient vector's name (default w)."),
    click.option("--nll", is_flag=True, default=False,
                 help="With --loss: the loss is a negative log-likelihood, so standard errors come "
                 "from its Hessian (with z, P, intervals, log-likelihood, AIC/BIC); without it "
                 "they are sandwich (robust) standard errors."),
]


def loss_options(fn):
    for opt in reversed(LOSS_OPTIONS):
        fn = opt(fn)
    return fn


@main.command("fit")
@click.argument("model", type=MODEL, required=False)
@loss_options
@fit_options
@common
@command
def fit_cmd(model, newton, solver, autograd, data, target, features, no_intercept, standardize,
            l2, seed,
            n_samples, n_features, max_iter, tol, tf32, device, dtype, as_json, hidden=None,
            activation=None, epochs=None, batch_size=None, lr=None, test_fraction=None,
            chunk_rows=None, distributed=False, hessian_dtype=None, plot=None, compare=False,
            quiet=False, all_iterations=False, loss_expr=None, loss_wrt=None, exclude=None,
            dropna=False, nll=False):
    """Fit MODEL (or a loss written as an expression, --loss) with its hand-derived
    gradient (and Hessian)."""
    if newton and solver not in (None, "newton"):
        raise UserError(f"--newton conflicts with --solver {solver}; pass one of them.")
    if loss_expr is not None or loss_wrt is not None or nll:
        return _fit_loss(model, loss_expr, loss_wrt, locals())
    if model is None:
        raise UserError("fit needs a MODEL (one of "
                        f"{', '.join(sorted(registry.REGISTRY))}) or --loss EXPR.")
    if plot:  # before any work: matplotlib present, folder writable, iterations to draw
        from handgrad.present import plot as plots

        plots.preflight(plot, solver or ("newton" if newton else
                                         registry.get(model).model.default_solver), compare)
    fit_kw = dict(data_path=data, target=target, features=columns(features), intercept=not no_intercept,
                  exclude=columns(exclude), dropna=dropna,
                  l2=l2, standardize=standardize, device=device, dtype=dtype, seed=seed,
                  n_samples=n_samples, n_features=n_features, max_iter=max_iter, tol=tol,
                  tf32=tf32, test_fraction=test_fraction, chunk_rows=chunk_rows,
                  distributed_run=distributed, hessian_dtype=hessian_dtype,
                  hyper={k: v for k, v in (("hidden", hidden), ("activation", activation),
                                           ("epochs", epochs), ("batch_size", batch_size),
                                           ("lr", lr)) if v is not None})
    _check_sizes(model, data, n_samples, n_features, hidden)
    from handgrad.fitting import pipeline

    bars = term.fit_progress if term.enabled(as_json) else None
    out = pipeline.fit(model, solver="newton" if newton else solver, autograd=autograd,
                       progress=bars, **fit_kw)
    if (out.get("distributed") or {}).get("rank", 0):  # under torchrun only rank 0 prints
        return 0 if out["converged"] else 1
    if compare:
        from handgrad.fitting import compare as comparison

        out["compare"] = comparison.run(model, done=out, progress=bars, **fit_kw)
    if plot:
        out["plot"] = plots.fit_figure(out, plot, tol=tol)
    if as_json:
        emit_json(out)
    else:
        _print_fit(out, iterations="none" if quiet else "all" if all_iterations else "capped")
        if compare:
            click.echo("\nsame data and start, each solver (loss - best: against the best of "
                       "all runs):")
            from handgrad.present import render

            click.echo(render.compare_table(out["compare"]))
        if plot:
            click.echo(f"\nplot: {plot}")
    if out.get("interrupted"):
        if not out["history"]:  # before the first loss: nothing reached, only the start
            click.echo(f"interrupted: {out['model']} stopped before its first iteration; "
                       "nothing was reached (the starting values are shown above)", err=True)
            return 130
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


def _check_sizes(model, data, n_samples, n_features, hidden) -> None:
    """Sizes given on the command line that the memory available now cannot hold: one line
    before anything is allocated (the synthetic data set; two_layer's hidden layer)."""
    import inspect

    if n_samples is None and n_features is None and hidden is None:
        return
    defaults = {k: p.default for k, p in
                inspect.signature(registry.get(model).model.synthetic).parameters.items()
                if isinstance(p.default, int)}
    synthetic = data is None
    n = (n_samples or defaults.get("n", 1)) if synthetic else 1  # a file's rows: read later
    d = (n_features or defaults.get("d", 1)) if synthetic else 1
    if synthetic:
        problem = memory_problem(8.0 * n * (d + 1), f"the synthetic data set ({n:,} rows x "
                                 f"{d:,} columns in float64)")
        if problem:
            raise UserError(f"{problem}: use a smaller --n-samples or --n-features.")
    if hidden:
        k = defaults.get("k", 1) if synthetic else 1
        # weights and their gradient; per row: the activations, their derivative, the backward pass
        problem = memory_problem(8.0 * hidden * (2 * (d + k + 1) + 3 * n),
                                 f"--hidden {hidden:,}: the hidden layer"
                                 + (f" ({n:,} rows x {hidden:,} units)" if synthetic else ""))
        if problem:
            raise UserError(f"{problem}: use fewer hidden units.")


def _fit_loss(model, expr, wrt, opts: dict) -> int:
    """fit --loss EXPR --wrt w: derive, verify (refuse when a line is not verified: exit 1),
    then fit through the one pipeline (handgrad/fitting/expression.py)."""
    if not expr:
        flag = "--nll" if opts["nll"] and opts["loss_wrt"] is None else "--wrt"
        raise UserError(f"{flag} goes with --loss EXPR (the loss written as an expression).")
    if model is not None:
        raise UserError(f"fit takes a MODEL or --loss, not both (got {model} and --loss).")
    if not opts["data"]:
        raise UserError("fit --loss needs data: --data FILE (a CSV with --target, .npz, .npy).")
    for flag, given in (("--compare", opts["compare"]), ("--autograd", opts["autograd"]),
                        ("--plot", opts["plot"]), ("--standardize", opts["standardize"]),
                        ("--exclude", opts["exclude"]), ("--dropna", opts["dropna"])):
        if given:
            raise UserError(f"{flag} is not available with --loss yet.")
    unused = [f"--{k.replace('_', '-')}" for k in ("hidden", "activation", "n_samples",
                                                    "n_features")
              if opts[k] is not None]
    if unused:
        raise UserError(f"{', '.join(unused)} do(es) not apply to --loss.")
    from handgrad.fitting import expression

    feats = columns(opts["features"])
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
            progress=term.fit_progress if term.enabled(as_json) else None, nll=opts["nll"])
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
        click.echo(f"fitted {le['path']['text']}")
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
        if p.name in ("as_json", "loss_expr", "loss_wrt", "debug"):
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
    types["exclude"] = (str, list)
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
@click.option("--quick", is_flag=True,
              help="Small sizes (seconds); default: the full sizes (200k x 100 and 1M x 50 fits, "
              "minutes).")
@click.option("--out", "out_dir", default="bench-results", show_default=True,
              help="Folder for bench.md (markdown table) and bench.json, made in the current "
              "folder; the committed table is refreshed only with --out benchmarks/results.")
@click.option("--only", multiple=True, help="Run only these sections (repeatable): machine, "
              "startup, logistic, poisson, job, hessian, gradients, derived, least_squares, covariance, "
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
@loss_options
@fit_options
@common
@click.pass_context
def run_cmd(ctx, config_path, **flags):
    """Run a TOML experiment file: its keys mirror `fit`'s flags (model = "logistic",
    max_iter = 50, intercept = false, ...); any `fit` flag given here wins over the file's
    value (run exp.toml --max-iter 3)."""
    from click.core import ParameterSource

    given = {k: v for k, v in flags.items()
             if ctx.get_parameter_source(k) in (ParameterSource.COMMANDLINE,
                                                ParameterSource.ENVIRONMENT)}
    as_json = bool(flags.get("as_json"))
    try:
        cfg = config.load(config_path, _fit_key_types())
    except UserError as exc:
        if as_json:
            emit_json({"error": str(exc), "status": 2})
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    model = cfg.pop("model", None)
    if "loss_expr" in given:  # a loss on the command line replaces the file's model or loss
        model = None
        cfg.pop("loss", None), cfg.pop("wrt", None)
    problem = config.loss_keys(cfg, config_path, model)  # loss = "..." (+ wrt) or a model
    if problem:
        pass
    elif "loss" in cfg or "loss_expr" in given:  # fit --loss: verified before the fit
        if "loss" in cfg:
            cfg["loss_expr"], cfg["loss_wrt"] = cfg.pop("loss"), cfg.pop("wrt", None)
        problem = _check_config_values(ctx, cfg, config_path)
    elif model is None:
        problem = (f"{config_path}: the key 'model' is required "
                   f"(one of {', '.join(sorted(registry.REGISTRY))}), or 'loss'.")
    elif model not in registry.REGISTRY:
        near = difflib.get_close_matches(model, sorted(registry.REGISTRY), n=2, cutoff=0.6)
        problem = (f"{config_path}: unknown model {model!r}"
                   + (f"; did you mean {' or '.join(map(repr, near))}?" if near else "")
                   + f" (available: {', '.join(sorted(registry.REGISTRY))}).")
    else:
        problem = _check_config_values(ctx, cfg, config_path)
    if problem:
        if as_json:
            emit_json({"error": problem, "status": 2})
        click.echo(f"error: {problem}", err=True)
        ctx.exit(2)
    if "intercept" in cfg:
        cfg["no_intercept"] = not cfg.pop("intercept")
    for key in ("features", "exclude"):
        if isinstance(cfg.get(key), list):
            cfg[key] = ",".join(map(str, cfg[key]))
    if "newton" in given:  # --newton on the command line replaces the file's solver
        cfg.pop("solver", None)
    if "solver" in given:
        cfg.pop("newton", None)
    cfg.update(given)  # flags given here win over the file
    cfg["as_json"] = as_json or cfg.get("as_json", False)
    ctx.invoke(fit_cmd, model=model, **cfg)  # click fills the flags the file leaves out


def columns(names: str | None) -> list[str] | None:
    """--features / --exclude: comma-separated column names (None when not given)."""
    return [f.strip() for f in names.split(",") if f.strip()] if names else None


def _deep(fn):
    """fn where formulas as deep as the notation reads (a 5,000-term sum) can be walked (the
    notation, and torch with it, is imported when fn runs: `list` and `--help` import none)."""
    @functools.wraps(fn)
    def run(*args, **kw):
        from handgrad.notation.ast import deep

        return deep(fn)(*args, **kw)
    return run


@main.command("derive")
@click.argument("model", type=MODEL, required=False)
@click.option("--file", "file_", type=str, default=None, metavar="FILE",
              help="Check your own derivation: a plain-text .hg file in the notation "
              "(examples/trace_logdet.hg), which is only read, never run; or a Python file "
              "(examples/my_derivation.py), which is executed as Python, with your "
              "permissions: run only files you trust.")
@click.option("--all", "all_", is_flag=True, help="Every registered model.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "latex"]),
              default="text", show_default=True, help="How to print the derivation.")
@click.option("--seed", type=SEED, default=0, show_default=True,
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
    """Print a derivation step by step, each line verified against torch.func.jvp: a MODEL's
    (or every model's with --all), your own (--file), or one handgrad writes (--expr).

    A .hg file and an --expr are parsed, never executed; a .py file is executed as Python."""
    from handgrad.verify import derive

    given = sum(bool(x) for x in (model, file_, all_, expr))
    if given == 0:
        raise needs_model("derive", ", or your own derivation: --file FILE or --expr EXPR")
    if given > 1:
        raise UserError("derive takes one of MODEL, --all, --file FILE or --expr EXPR, not "
                        "several.")
    if at_path and not (expr or (file_ and not file_.endswith(".py"))):
        raise UserError("--at FILE.npz goes with --expr EXPR or --file F.hg.")
    if expr:
        return _derive_expr(expr, let_, wrt, hessian, emit, fmt, as_json, at_path)
    if let_ or wrt or hessian or emit:
        raise UserError("--let, --wrt, --hessian and --emit go with --expr.")
    if file_ and not file_.endswith(".py"):  # the plain-text notation (examples/*.hg)
        return _derive_text(file_, fmt, as_json, at_path)
    if file_:
        try:
            out = derive.derive_file(file_)
        except SystemExit as exc:  # the user's Python called sys.exit (or exit, quit)
            raise UserError(f"{file_} called sys.exit({exc.code!r}) while it ran; a derivation "
                            "file defines loss, inputs and STEPS and does not exit (see "
                            "examples/my_derivation.py).") from None
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
    from handgrad.verify.derive import expression_report

    out = expression_report(expr, let_, wrt, hessian=hessian, emit=emit, at_path=at_path)
    _print_notation(out, fmt, as_json)
    if "torch" in out and not as_json:
        click.echo("\n# --emit torch\n" + out["torch"])
    return 0 if out["ok"] else 1


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

    from handgrad.verify.derive import text_report

    if not os.path.exists(path):
        raise UserError(f"Derivation file not found (no such file): {path}")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory; --file takes a .hg text file or a .py file.")
    from handgrad.notation import NotationError
    from handgrad.notation.textfile import read_text

    try:
        text = read_text(path)
    except NotationError as exc:
        raise UserError(str(exc)) from None
    out = text_report(text, path, at_path=at_path)
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
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed for the check problems, step directions and synthetic data.")
@click.option("--no-plots", is_flag=True, help="Skip the convergence plots (no matplotlib needed).")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--data", "data", type=str, default=None,
              help="Fit your own data on the page (as `fit --data`): a CSV, .npz or X.npy.")
@click.option("--target", type=str, default=None, help="With --data: the CSV's target column.")
@click.option("--features", type=str, default=None,
              help="With --data: comma-separated feature columns (default: all but the target).")
@click.option("--exclude", type=str, default=None, metavar="COLS",
              help="With --data: comma-separated columns to leave out.")
@click.option("--dropna", is_flag=True, help="With --data: drop rows with a missing value.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@command
def report_cmd(models, all_, out_dir, seed, no_plots, device, as_json, data=None, target=None,
               features=None, exclude=None, dropna=False):
    """One page per MODEL named, or every model with --all (Markdown and HTML): the derivation
    with each step's verdict, the check table (hand vs autograd vs finite differences), a fit
    and its convergence plot (on the model's synthetic data, or on yours with --data)."""
    if not models and not all_:
        raise needs_model("report")
    from handgrad.present import report

    fit_kw = None
    if data is not None:
        if all_ or len(models) != 1:
            raise UserError("report --data makes the page of one model: name it "
                            "(e.g. report logistic --data F.csv --target y).")
        fit_kw = {"data_path": data, "target": target, "features": columns(features),
                  "exclude": columns(exclude), "dropna": dropna}
        from handgrad.fitting.data import load  # a bad file is exit 2 before any page work

        kind = registry.get(models[0]).model.target
        load(data, target, fit_kw["features"], needs_target=kind.needs_y,
             exclude=fit_kw["exclude"], dropna=dropna, kind=kind)
    elif target or features or exclude or dropna:
        raise UserError("--target, --features, --exclude and --dropna go with --data FILE.")
    out = report.run(list(models), out_dir=out_dir, all_models=all_, seed=seed, device=device,
                     plots=not no_plots, progress=term.enabled(as_json), fit_kw=fit_kw)
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


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port (0: any free one).")
@command
def serve_cmd(host, port):
    """A local web page: type an expression or paste a derivation (.hg) and see each line
    derived and verified; JSON at /api/derive and /api/check."""
    from handgrad import serve

    try:
        serve.run(host, port, say=click.echo)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return 0


if _STARTING and signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # imported, not run: hand it back

if __name__ == "__main__":
    main()
