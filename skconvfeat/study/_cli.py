"""Command line: ``skconvfeat`` or ``python -m skconvfeat``.

Runs :func:`skconvfeat.study.run_study` and answers, from its numbers, the
question "if only the fully-connected layer of a CNN is trained and the
kernels stay fixed, does it classify as well?". Progress goes to stderr; the
table and the answer (or, with ``--json``, only the results dict) to stdout.
Exit codes: 0 done, 1 the data could not be loaded or the report not
written, 2 bad options.
"""

import argparse
import contextlib
import json
import sys

import numpy as np

from .._banks import list_banks
from .._hints import did_you_mean
from ._study import CLASSIFIERS, DEFAULT_BANKS, check_banks, run_study


class UsageError(Exception):
    """A bad command-line option (reported on one line, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _n_jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer (-1 for all cores), got {text!r}") from None
    if value == 0:
        raise argparse.ArgumentTypeError("0 workers: use a positive count or -1 for all cores")
    return value


def build_parser():
    """The argument parser of ``skconvfeat``."""
    parser = _Parser(
        prog="skconvfeat",
        description=(
            "Train only the fully-connected head of a one-layer CNN whose kernels are fixed "
            "(Gaussian, Gabor, sharpen, random, raw pixels) and compare it with learned kernels "
            "on the same cross-validation splits."
        ),
        allow_abbrev=False,
    )
    parser.add_argument("--banks", default=",".join(DEFAULT_BANKS),
                        help=f"comma-separated fixed banks from {', '.join(list_banks())} (default: %(default)s)")
    parser.add_argument("--classifier", choices=CLASSIFIERS, default="logistic",
                        help="the trained head (default: %(default)s)")
    parser.add_argument("--repeats", type=_positive_int, default=5, help="CV repeats (default: %(default)s)")
    parser.add_argument("--folds", type=_positive_int, default=5, help="CV folds, >= 2 (default: %(default)s)")
    parser.add_argument("--n-jobs", type=_n_jobs, default=-1,
                        help="parallel workers over splits, -1 for all cores (default: %(default)s)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the fits on the Dask cluster at ADDRESS (e.g. tcp://host:8786; "
                             "needs skconvfeat[dask]); results equal a local run's")
    parser.add_argument("--json", action="store_true", help="print only the results dict, as JSON, on stdout")
    parser.add_argument("--out", metavar="DIR",
                        help="write results.json, results.csv, summary.md and report.html to DIR")
    parser.add_argument("--dataset", default="digits",
                        help="digits (bundled with scikit-learn) or a skconvfeat.datasets name (default: %(default)s)")
    parser.add_argument("--data-home", metavar="PATH", help="where downloaded datasets are kept")
    parser.add_argument("--train-size", type=_positive_int, metavar="N",
                        help="subsample every training fold (stratified) to N images")
    parser.add_argument("--no-learned", action="store_true", help="skip the arms with kernels trained in PyTorch")
    parser.add_argument("--no-transfer", action="store_true", help="skip the transfer (data-efficiency) experiment")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and models (default: %(default)s)")
    return parser


def _parse_banks(text):
    try:
        return check_banks(name.strip() for name in text.split(",") if name.strip())
    except ValueError as exc:
        raise UsageError(f"argument --banks: {exc}") from None


def _load_images(name, data_home):
    """``(images, target)`` of the dataset ``name``."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target
    from ..datasets._fetchers import DATASET_NAMES, load_dataset

    if name not in DATASET_NAMES:
        names = ("digits", *DATASET_NAMES)
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(names)}.{did_you_mean(name, names)}")
    bunch = load_dataset(name, data_home=data_home, subset="train")
    return bunch.images, bunch.target


def _fits_on(scheduler):
    """A context sending the study's joblib fits to the Dask cluster at ``scheduler`` (or nowhere)."""
    if scheduler is None:
        return contextlib.nullcontext()
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("argument --scheduler: needs Dask; pip install 'skconvfeat[dask]'") from None
    from joblib import parallel_config

    stack = contextlib.ExitStack()
    stack.enter_context(Client(scheduler, timeout="30s"))
    # Each split's seeds are fixed by the study, so where a fit runs cannot change its result.
    stack.enter_context(parallel_config(backend="dask"))
    return stack


def _progress_bar():
    """A ``progress(done, total, label)`` callable drawing on stderr, and a function to close it."""
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        return _plain_progress(), lambda: None
    if not sys.stderr.isatty():  # a log file: rich would draw nothing until the end
        return _plain_progress(), lambda: None
    bar = Progress(console=Console(stderr=True), transient=True)
    bar.start()
    task = bar.add_task("fitting", total=None)

    def progress(done, total, label):
        bar.update(task, completed=done, total=total, description=f"fitting {label:<22}")

    return progress, bar.stop


def _plain_progress():
    """A ``progress(done, total, label)`` callable printing plain lines on stderr (no rich)."""
    last = [-1]

    def progress(done, total, label):
        tenth = 10 * done // total
        if tenth != last[0]:  # a line for the first model, then one per tenth of the work
            last[0] = tenth
            print(f"skconvfeat: {done}/{total} models fitted", file=sys.stderr, flush=True)

    return progress


def _mean(values):
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.3f}" if values else "-"


def format_results(results):
    """The table, comparisons, transfer curve, answers and skipped arms, as text."""
    cv = results["cv"]
    header = (
        f"{results['dataset']}: {results['n_samples']} images {tuple(results['image_shape'])}, "
        f"{results['n_classes']} classes; head: {results['classifier']}; "
        f"{cv['n_repeats']}x{cv['n_splits']}-fold CV ({cv['n_train']} train / {cv['n_test']} test per split)"
    )
    lines = [
        header,
        "",
        f"{'arm':<28}{'features':>9}  {'accuracy (95% CI)':<24}{'fit s':>7}{'transform s':>13}",
    ]
    for arm in results["arms"]:
        acc = f"{100 * arm['mean']:.1f}% ({100 * arm['ci_low']:.1f}-{100 * arm['ci_high']:.1f})"
        lines.append(
            f"{arm['label']:<28}{arm['n_features']:>9}  {acc:<24}{_mean(arm['fit_time']):>7}"
            f"{_mean(arm['transform_time']):>13}"
        )
    lines.append("(95% CI corrected for overlapping CV training sets; times are means per split)")
    labels = {arm["name"]: arm["label"] for arm in results["arms"]}
    if results["comparisons"]:
        reference = labels[results["comparisons"][0]["reference"]]
        lines += ["", f"Against {reference} (corrected repeated k-fold t-test, Bouckaert & Frank 2004):"]
        for c in results["comparisons"]:
            lines.append(
                f"  {labels[c['arm']]:<26}{100 * c['mean_diff']:+6.1f} points "
                f"(95% CI {100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}), p = {c['p_value']:.2g}"
            )
    lines += _format_transfer(results["transfer"])
    lines += ["", "Answers:"]
    lines += [f"  [{v['verdict']}] {v['claim']}: {v['sentence']}" for v in results["verdicts"]]
    if results["skipped_arms"]:
        lines += ["", "Skipped:"] + [f"  {s['name']}: {s['reason']}" for s in results["skipped_arms"]]
    lines += ["", f"Done in {results['elapsed_s']:.1f} s."]
    return "\n".join(lines)


def _format_transfer(transfer):
    if transfer is None:
        return []
    title = (
        f"Transfer: kernels learned on classes {transfer['source_classes']}, used on "
        f"{transfer['target_classes']}; mean accuracy (fit s) over {transfer['n_seeds']} seeds"
    )
    lines = [
        "",
        title,
        f"  {'training images':<30}" + "".join(f"{n:>15}" for n in transfer["train_sizes"]),
    ]
    for arm in transfer["arms"].values():
        cells = [
            f"{100 * np.mean(s):.1f}% ({np.mean(t):.2f})" for s, t in zip(arm["scores"], arm["fit_time"])
        ]
        lines.append(f"  {arm['label']:<30}" + "".join(f"{c:>15}" for c in cells))
    return lines


def _write_report(results, extras, out_dir):
    from ._report import write_report

    write_report(results, extras, out_dir)


def main(argv=None):
    """Run the study from the command line; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.folds < 2:
            raise UsageError("argument --folds: needs at least 2 folds")
        banks = _parse_banks(args.banks)
        images, target = _load_images(args.dataset, args.data_home)
    except SystemExit as exc:  # --help
        return exc.code
    except (UsageError, ValueError) as exc:
        print(f"skconvfeat: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # download or file errors
        print(f"skconvfeat: error: cannot load {args.dataset!r}: {exc}", file=sys.stderr)
        return 1
    progress, close = _progress_bar()
    try:
        with _fits_on(args.scheduler):
            results, extras = run_study(
                images, target, dataset=args.dataset, banks=banks, classifier=args.classifier,
                n_splits=args.folds, n_repeats=args.repeats, random_state=args.seed, train_size=args.train_size,
                learned=not args.no_learned, transfer=not args.no_transfer, n_jobs=args.n_jobs,
                progress=progress, return_extras=True,
            )
    except UsageError as exc:
        print(f"skconvfeat: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the scheduler could not be reached
        print(f"skconvfeat: error: cannot reach the Dask scheduler {args.scheduler!r}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. --train-size too small for the classes
        print(f"skconvfeat: error: {exc}", file=sys.stderr)
        return 2
    finally:
        close()
    print(json.dumps(results, indent=2) if args.json else format_results(results))
    if args.out:
        try:
            _write_report(results, extras, args.out)
        except (ImportError, OSError) as exc:  # the numbers are printed above: report and go on
            print(f"skconvfeat: error: cannot write the report to {args.out!r}: {exc}", file=sys.stderr)
            return 1
    return 0
