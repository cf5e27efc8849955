"""Command line: ``hierlm fit models/<card>.toml`` or ``hierlm fit --data f.csv --formula ...``.

Bad input ends with exit code 2 and a one-line message on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from hierlm.errors import HierlmError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``hierlm`` command."""
    parser = argparse.ArgumentParser(
        prog="hierlm", description="Fit hierarchical linear models from lme4 formulas.")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="fit a model card or an ad-hoc formula and print it")
    fit.add_argument("card", nargs="?", help="model card (TOML), e.g. models/sleepstudy_slope.toml")
    fit.add_argument("--data", help="CSV file or bundled data set name (instead of a card)")
    fit.add_argument("--formula", help="lme4 formula (with --data)")
    fit.add_argument("--categorical", default="", help="comma-separated CSV columns to treat as factors")
    fit.add_argument("--method", choices=["reml", "ml", "map", "nuts"], help="override the card's method")
    fit.add_argument("--draws", type=int, help="posterior draws per chain (nuts)")
    fit.add_argument("--tune", type=int, help="tuning steps per chain (nuts)")
    fit.add_argument("--chains", type=int, help="number of chains (nuts)")
    fit.add_argument("--seed", type=int, dest="random_seed", help="random seed (nuts)")
    fit.add_argument("--report", metavar="DIR",
                     help="also write an HTML report, the saved fit and the model card to DIR")
    return parser


def _card_from_args(args: argparse.Namespace) -> Any:
    """Load the card, or assemble one from --data/--formula."""
    from hierlm import datasets
    from hierlm.cards import ModelCard, load_card, read_csv_data

    if args.card:
        if args.data or args.formula:
            raise _UsageError("give either a model card or --data/--formula, not both")
        return load_card(args.card)
    if not (args.data and args.formula):
        raise _UsageError("give a model card, or both --data and --formula")
    if args.data.lower() in {name.lower() for name in datasets.available()}:
        data = datasets.load(args.data)
    else:
        categorical = [c for c in args.categorical.split(",") if c]
        data = read_csv_data(args.data, categorical)
    return ModelCard(name=Path(args.data).stem, description="", formula=args.formula,
                     family="gaussian", data=data, fit_options={"method": "reml"})


class _UsageError(Exception):
    """Wrong combination of command-line arguments."""


def run_fit(args: argparse.Namespace) -> int:
    """Fit what the arguments describe and print the summary."""
    from hierlm.model import Model

    card = _card_from_args(args)
    options = dict(card.fit_options)
    for key in ("method", "draws", "tune", "chains", "random_seed"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    method = options.pop("method", "reml")
    if method in ("reml", "ml"):
        options = {k: v for k, v in options.items() if k not in ("draws", "tune", "chains", "random_seed")}
    start = time.perf_counter()
    model = Model(card.formula, card.data, family=card.family)
    fit = model.fit(method=method, **options)
    elapsed = time.perf_counter() - start
    print(f"# {card.name}: {card.description}".rstrip(": ") if card.description else f"# {card.name}")
    print(fit.summary())
    print(f"\n({method} fit in {elapsed:.2f} s)")
    if args.report:
        from hierlm.report import write_report

        files = write_report(fit, card, args.report)
        print(f"Report: {files.html}\nCard:   {files.card}")
        print("Fit:    " + ", ".join(str(path) for path in files.fit))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hierlm`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_fit(args)
    except _UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"hierlm: error: {error}", file=sys.stderr)
        return 2
    except HierlmError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"hierlm: error: {first_line}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
