"""Command line: ``hierlm fit models/<card>.toml`` or ``hierlm fit --data f.csv --formula ...``.

A card's ``[fit] compare`` (or ``--compare``) fits a twin by a second method
and prints the two side by side: ``scripts/run-main`` fits
``models/sleepstudy_slope.toml`` by NUTS and REML and prints both summaries
and the table of :func:`hierlm.compare_estimates`.

Bad input ends with exit code 2 and one line on stderr, never a traceback:
a usage mistake, an option the chosen methods ignore (``--draws`` with
REML), any :class:`~hierlm.errors.HierlmError` (unreadable cards and CSVs,
unknown card keys, bad formulas, ...), a file system error while writing the
report, and a closed output pipe (``hierlm fit ... | head``). Warnings are
printed as one ``hierlm: warning: ...`` line each.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from hierlm.errors import HierlmError

__all__ = ["main", "build_parser", "run_fit"]

# command-line flag -> fit option
_FLAGS = {"draws": "--draws", "tune": "--tune", "chains": "--chains", "random_seed": "--seed"}


class _UsageError(Exception):
    """Wrong combination of command-line arguments."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``hierlm: error: <message>`` and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _count(lowest: int) -> Any:
    """An argparse type: an integer >= ``lowest``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lowest}, got {value}")
        return value

    parse.__name__ = f"integer >= {lowest}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``hierlm`` command."""
    from hierlm.cards import METHODS

    parser = _Parser(prog="hierlm", description="Fit hierarchical linear models from lme4 formulas.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fit = commands.add_parser("fit", help="fit a model card or an ad-hoc formula and print it")
    fit.add_argument("card", nargs="?", help="model card (TOML), e.g. models/sleepstudy_slope.toml")
    fit.add_argument("--data", help="CSV file or bundled data set name (instead of a card)")
    fit.add_argument("--formula", help="lme4 formula (with --data)")
    fit.add_argument("--categorical", default="", help="comma-separated CSV columns to treat as factors")
    fit.add_argument("--method", choices=METHODS, help="override the card's method (default reml)")
    fit.add_argument("--compare", choices=[*METHODS, "none"],
                     help="also fit this method and print both side by side (one of the two must be "
                          "nuts); 'none' drops the card's comparison")
    fit.add_argument("--draws", type=_count(1), help="posterior draws per chain (nuts)")
    fit.add_argument("--tune", type=_count(0), help="tuning steps per chain (nuts)")
    fit.add_argument("--chains", type=_count(1), help="number of chains (nuts)")
    fit.add_argument("--seed", type=_count(0), dest="random_seed", help="random seed >= 0 (nuts)")
    fit.add_argument("--report", metavar="DIR",
                     help="also write an HTML report, the saved fit and the model card to DIR")
    return parser


def _ad_hoc_card(args: argparse.Namespace) -> Any:
    """A card assembled from --data/--formula/--categorical."""
    from hierlm import datasets
    from hierlm.cards import ModelCard, find_data_file, read_csv_data

    bundled = {name.lower(): name for name in datasets.available()}
    spec: dict[str, Any]
    categorical = [c.strip() for c in args.categorical.split(",") if c.strip()]
    if args.data.lower() in bundled:
        if categorical:
            raise _UsageError("--categorical applies to a CSV file, not a bundled data set")
        name = bundled[args.data.lower()]
        data, spec = datasets.load(name), {"dataset": name}
    else:
        path = find_data_file(args.data)
        data = read_csv_data(path, categorical)
        spec = {"path": str(path.resolve()), "categorical": categorical}
    return ModelCard(name=Path(args.data).stem, description="", formula=args.formula,
                     family="gaussian", data=data, fit_options={"method": "reml"}, data_spec=spec)


def _load(args: argparse.Namespace) -> Any:
    """Load the card, or assemble one from --data/--formula."""
    from hierlm.cards import load_card

    if args.card:
        if args.data or args.formula or args.categorical:
            raise _UsageError("give either a model card or --data/--formula/--categorical, not both")
        return load_card(args.card)
    if not (args.data and args.formula):
        raise _UsageError("give a model card, or both --data and --formula")
    return _ad_hoc_card(args)


def effective_options(card_options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The card's ``[fit]`` options with the command line's overrides, checked.

    ``--method`` replaces the card's method; the card's options that neither
    the new method nor the comparison takes are dropped (they belonged to
    the card's method), and so is a card comparison that no longer pairs one
    NUTS fit with one point fit. Options given on the command line that no
    fit of the run takes are refused.
    """
    from hierlm.cards import METHOD_OPTIONS, check_fit_options

    options = dict(card_options)
    options.setdefault("method", "reml")
    if args.method is not None:
        options["method"] = args.method
    if args.compare == "none" or (args.compare is None and "compare" in options
                                  and [options["method"], options["compare"]].count("nuts") != 1):
        options.pop("compare", None)
    elif args.compare is not None:
        options["compare"] = args.compare
    methods = [options["method"], *([options["compare"]] if "compare" in options else [])]
    if len(methods) == 2 and methods.count("nuts") != 1:
        raise _UsageError(f"--compare {methods[1]} with method {methods[0]}: the side-by-side table "
                          "needs one nuts fit and one point fit (reml, ml or map)")
    used = {key for method in methods for key in METHOD_OPTIONS[method]}
    for key, flag in _FLAGS.items():
        value = getattr(args, key)
        if value is None:
            continue
        if key not in used:
            raise _UsageError(f"{flag} applies to nuts fits, but this run fits {' and '.join(methods)} "
                              "(add --method nuts or --compare nuts)")
        options[key] = value
    options = {key: value for key, value in options.items()
               if key in ("method", "compare") or key in used}
    check_fit_options(options, "command line")
    return options


def _fit(model: Any, method: str, options: dict[str, Any]) -> tuple[Any, float]:
    """Fit ``model`` by ``method`` with the options it takes; return the fit and its seconds."""
    from hierlm.cards import method_options

    start = time.perf_counter()
    fit = model.fit(method=method, **method_options(method, options))
    return fit, time.perf_counter() - start


def _print(text: str = "") -> None:
    print(text, flush=True)


def _check_report_dir(report: str | None) -> None:
    """Refuse a --report path that is an existing file before anything is fitted."""
    if report is not None and Path(report).exists() and not Path(report).is_dir():
        raise _UsageError(f"--report {report}: is a file; give a folder (created if missing)")


def run_fit(args: argparse.Namespace) -> int:
    """Fit what the arguments describe, print the summaries and write the report."""
    from hierlm.model import Model

    _check_report_dir(args.report)
    card = _load(args)
    options = effective_options(card.fit_options, args)
    method, twin_method = options["method"], options.get("compare")
    model = Model(card.formula, card.data, family=card.family, **card.model_options)
    fit, elapsed = _fit(model, method, options)
    title = f"# {card.name}: {card.description}" if card.description else f"# {card.name}"
    _print(title)
    _print(str(fit.summary()))
    _print(f"\n({method} fit in {elapsed:.2f} s)")
    twin = None
    if twin_method is not None:
        twin, twin_elapsed = _fit(model, twin_method, options)
        _print(f"\n# Twin fit by {twin_method}")
        _print(str(twin.summary()))
        _print(f"\n({twin_method} fit in {twin_elapsed:.2f} s)")
        from hierlm.report_tables import comparison_table

        bayes, point = (fit, twin) if method == "nuts" else (twin, fit)
        point_method = twin_method if method == "nuts" else method
        _print(f"\n# NUTS next to {point_method.upper()}, side by side")
        _print(comparison_table(bayes, point).to_string(index=False))
    nuts_fit = fit if method == "nuts" else twin if twin_method == "nuts" else None
    if nuts_fit is not None:
        options["random_seed"] = int(nuts_fit.seed)  # the saved card repeats the draws exactly
    if args.report:
        from hierlm.report import write_report

        saved = replace(card, fit_options=options)
        files = write_report(fit, saved, args.report, compare=twin)
        _print(f"Report: {files.html}\nCard:   {files.card}")
        _print("Fit:    " + ", ".join(str(path) for path in files.fit))
    return 0


def _show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Print a warning as one line (other libraries' warnings with their class name)."""
    from hierlm.errors import HierlmWarning

    text = " ".join(str(message).split())
    where = "" if issubclass(category, HierlmWarning) else f"{category.__name__}: "
    print(f"hierlm: warning: {where}{text}", file=sys.stderr)


def _one_line(error: BaseException) -> str:
    """The first line of an error's message (its class name when empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hierlm`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = run_fit(args)
            sys.stdout.flush()
            return code
    except BrokenPipeError:
        _silence_stdout()
        print("hierlm: error: the output pipe was closed before the output was written",
              file=sys.stderr)
        return 2
    except (_UsageError, HierlmError) as error:
        print(f"hierlm: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        print(f"hierlm: error: {error.strerror or _one_line(error)}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
