"""Command line: ``skconvfeat`` or ``python -m skconvfeat``.

Runs :func:`skconvfeat.study.run_study` and answers, from its numbers, the
question "if only the fully-connected layer of a CNN is trained and the
kernels stay fixed, does it classify as well?". It runs the transfer
experiment (:func:`skconvfeat.study.run_transfer`) first, so that the study
can judge claim (c) from it. Every option that decides the numbers becomes a
field of one :class:`~skconvfeat.study.StudySettings`, which checks them; its
ValueError is reported as a bad option. Progress goes to stderr; the tables
and the answers (or, with ``--json``, only the study's results dict) to stdout.
Digits is cross-validated; the datasets of :mod:`skconvfeat.datasets` use
their official train/test split, every training image by default.

``skconvfeat report DIR [DIR ...] --out OUT`` instead puts the studies of
several ``--out`` folders side by side on one page
(:func:`skconvfeat.study.write_comparison`). A first argument ``report``
selects it; the study takes no positional arguments, so no study command
line means anything else.

Exit codes: 0 done; 1 bad data (the dataset could not be loaded, the study
failed on it, a report folder to compare could not be read, or the report
could not be written); 2 a bad option, ``--out`` included, reported before
any work starts; 130 interrupted (Ctrl-C), on one line.
"""

import argparse
import contextlib
import json
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np

from .. import __version__
from .._banks import list_banks
from .._hints import did_you_mean
from .._presets import PRESETS
from .._transformer import FixedConvTransformer
from ..datasets import list_datasets, load_dataset, load_image_folder
from . import _format as fmt
from ._compare import COMPARISON_FILES, write_comparison
from ._curves import AUGMENTATIONS, HEADS, CurveProtocol
from ._design import CLASSIFIERS, DEFAULT_BANKS, DEPTHS, DEVICES
from ._document import study_document, to_text
from ._report import REPORT_FILES, check_out_dir, write_report
from ._settings import StudySettings
from ._study import run_study
from ._transfer import run_transfer


class UsageError(Exception):
    """A bad command-line option (reported on one line, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _number(cast, accept, expected):
    """An argparse type: ``cast(text)``, refused with "expected <expected>" unless ``accept(value)``."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda value: value >= 1, "a positive integer")
_non_negative_int = _number(int, lambda value: value >= 0, "a non-negative integer")
_seed_caps = _number(lambda text: [int(part) for part in _split(text)],
                     lambda counts: bool(counts) and min(counts) >= 1, "a positive integer or a comma-separated list")
_n_jobs = _number(int, lambda value: value != 0, "a worker count (-1 for all cores)")
_margin = _number(float, lambda value: 0 < value < 50, "a number of accuracy points between 0 and 50")
_non_negative_int = _number(int, lambda value: value >= 0, "a non-negative integer")
_improvement = _number(float, lambda value: 0 <= value < 50, "a number of accuracy points from 0 to 50")
_rotation = _number(float, lambda value: 0 <= value <= 45, "a number of degrees from 0 to 45")


def build_parser():
    """The argument parser of ``skconvfeat``."""
    parser = _Parser(
        prog="skconvfeat",
        description=(
            "Train only the fully-connected head of a CNN whose kernels are fixed (Gaussian, Gabor, sharpen, "
            "random, k-means, raw pixels; one layer, or two with --layers 1,2) and compare it with learned kernels "
            "on the same images (cross-validation on digits, the official test set of larger datasets)."
        ),
        epilog="Other commands, each with --help: skconvfeat curves (every arm at every training-set size under one "
               "protocol), skconvfeat transfer (kernels learned on another dataset, frozen), skconvfeat preset (a "
               "wide data-derived preset on a whole training set), skconvfeat report DIR [DIR ...] --out OUT "
               "(several --out folders side by side on one page).",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--banks", default=",".join(DEFAULT_BANKS),
                        help=f"comma-separated fixed banks from {', '.join(list_banks())} (default: %(default)s)")
    parser.add_argument("--layers", default="1", metavar="DEPTHS",
                        help=f"comma-separated depths of the networks every arm is built in, from "
                             f"{', '.join(map(str, DEPTHS))} (default: %(default)s)")
    parser.add_argument("--classifier", choices=CLASSIFIERS, default="logistic",
                        help="the trained head (default: %(default)s)")
    parser.add_argument("--repeats", type=_positive_int, default=5,
                        help="CV repeats, digits only (default: %(default)s)")
    parser.add_argument("--folds", type=_positive_int, default=5,
                        help="CV folds, >= 2, digits only (default: %(default)s)")
    parser.add_argument("--n-jobs", type=_n_jobs, default=-1,
                        help="parallel workers over splits, -1 for all cores (default: %(default)s)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the fits on the Dask cluster at ADDRESS (e.g. tcp://host:8786; "
                             "needs skconvfeat[dask]); results equal a local run's")
    parser.add_argument("--json", action="store_true", help="print only the study's results dict (results.json; the transfer experiment's is in --out's "
                             "transfer.json), as JSON, on stdout")
    parser.add_argument("--out", metavar="DIR",
                        help="write results.json, results.csv, transfer.json, transfer.csv, summary.md and "
                             "report.html to DIR")
    parser.add_argument("--dataset", default="digits",
                        help="digits (bundled with scikit-learn), a skconvfeat.datasets name, or the PATH of your "
                             "own folder or archive of images laid out class/image (cross-validated) or "
                             "train|test/class/image (the test split scored), read by "
                             "skconvfeat.datasets.load_image_folder (default: %(default)s)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="also the wide data-derived preset NAME with its ridge head, as one more fixed arm")
    parser.add_argument("--data-home", metavar="PATH", help="where downloaded datasets are kept")
    parser.add_argument("--train-size", type=_positive_int, metavar="N",
                        help="subsample every training set (stratified) to N images (default: all)")
    parser.add_argument("--seeds", type=_positive_int, default=1,
                        help="repeats of every arm with other seeds, on the official split of a large dataset "
                             "(default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where the learned arms train: cuda needs a GPU PyTorch sees (default: %(default)s)")
    parser.add_argument("--margin", type=_margin, default=1.0, metavar="POINTS",
                        help="two arms within this many accuracy points count as equal (default: %(default)s)")
    parser.add_argument("--no-learned", action="store_true", help="skip the arms with kernels trained in PyTorch")
    parser.add_argument("--no-transfer", action="store_true", help="skip the transfer (data-efficiency) experiment")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and models (default: %(default)s)")
    return parser


def _split(text):
    """The non-empty comma-separated parts of ``text``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_layers(text):
    try:
        return [int(part) for part in _split(text)]
    except ValueError:
        raise UsageError(f"argument --layers: expected comma-separated depths, got {text!r}") from None


# The option that sets each StudySettings field the library may refuse.
_OPTIONS = {"banks": "--banks", "depths": "--layers", "n_splits": "--folds", "n_repeats": "--repeats",
            "n_seeds": "--seeds", "train_size": "--train-size", "device": "--device", "margin": "--margin",
            "random_state": "--seed", "preset": "--preset"}


def _settings(args):
    """The StudySettings of the options; the library's ValueError becomes a usage error naming the option."""
    try:
        return StudySettings(
            dataset=args.dataset, banks=_split(args.banks), depths=_parse_layers(args.layers),
            classifier=args.classifier, n_splits=args.folds, n_repeats=args.repeats, n_seeds=args.seeds,
            random_state=args.seed, train_size=args.train_size, learned=not args.no_learned, device=args.device,
            margin=args.margin / 100, preset=args.preset,
        )
    except ValueError as exc:
        field = re.match(r"The '(\w+)' parameter", str(exc))
        option = _OPTIONS.get(field and field.group(1))
        raise UsageError(f"argument {option}: {exc}" if option else str(exc)) from None


def _check_dataset(name):
    names = ("digits", *list_datasets())
    if name not in names and not Path(name).exists():
        raise UsageError(
            f"argument --dataset: unknown dataset {name!r}, and no file or folder of that name; choose from "
            f"{', '.join(names)}, or give the path of a folder or archive of images.{did_you_mean(name, names)}"
        )


def _load_images(name, data_home):
    """``(images, target, test_images, test_target)``; the test pair is None when cross-validated."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target, None, None
    if name not in list_datasets():
        return _load_folder(name)
    train = load_dataset(name, data_home=data_home, subset="train")
    test = load_dataset(name, data_home=data_home, subset="test")
    return train.images, train.target, test.images, test.target


def _load_folder(path):
    """A user's folder or archive: its ``train`` and ``test`` splits, or all of it (cross-validated) when it has
    no split folders."""
    try:
        data = load_image_folder(path, subset="all")
    except ValueError as exc:
        if "has no split folders" not in str(exc):
            raise
        data = load_image_folder(path)
        return data.images, data.target, None, None
    splits = set(data.split.tolist())
    if not {"train", "test"} <= splits:
        raise ValueError(f"{path} is split into {sorted(splits)}; the study needs 'train' and 'test' folders "
                         "(or no split folders, to cross-validate).")
    train, test = data.split == "train", data.split == "test"
    return data.images[train], data.target[train], data.images[test], data.target[test]


class SchedulerError(Exception):
    """The Dask scheduler of ``--scheduler`` could not be reached (exit code 1)."""


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
    try:
        stack.enter_context(Client(scheduler, timeout="30s"))
    except OSError as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler {scheduler!r}: {exc}") from None
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
    """A ``progress(done, total, label)`` callable printing one line per finished model on stderr (no rich):
    the model, the elapsed time and an estimate of the time left (the mean time per model so far)."""
    import time

    start = time.perf_counter()

    def progress(done, total, label):
        elapsed = time.perf_counter() - start
        left = elapsed / done * (total - done) if done else float("nan")
        print(f"skconvfeat: {done}/{total} {label}: {fmt.duration(elapsed)} elapsed, about {fmt.duration(left)} left",
              file=sys.stderr, flush=True)

    return progress


def _check_extras(args):
    """Every optional dependency the chosen options need, before any work: a usage error naming the extra."""
    needed = []
    if getattr(args, "out", None) is not None:
        needed.append(("matplotlib", "report", "--out"))
    if getattr(args, "scheduler", None):
        needed.append(("distributed", "dask", "--scheduler"))
    if getattr(args, "dataset", "digits") not in ("digits", *list_datasets()):
        needed.append(("PIL", "images", "--dataset PATH"))
    for module, extra, option in needed:
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"{option} needs {module}: pip install 'skconvfeat[{extra}]'") from None


def _check_out(path, files=REPORT_FILES):
    """``--out`` as a Path, checked before any work starts (nothing is created yet)."""
    if path is None:
        return None
    try:
        return check_out_dir(path, files)
    except OSError as exc:
        raise UsageError(f"argument --out: {exc}") from None


def _check_train_size(train_size, target):
    """A stratified subsample needs at least one image of every class."""
    n_classes = len(np.unique(target))
    if train_size is not None and train_size < n_classes:
        raise UsageError(f"argument --train-size: {train_size} images cannot hold one of each of the "
                         f"{n_classes} classes")


def main(argv=None):
    """Run the study from the command line; return the exit code.

    0 done; 1 the data could not be loaded or the study or report failed on
    it; 2 a bad option (checked, ``--out`` included, before any work); 130
    interrupted (Ctrl-C).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return _report_main(argv[1:])
    if argv[:1] == ["curves"]:
        return _curves_main(argv[1:])
    if argv[:1] == ["transfer"]:
        return _transfer_main(argv[1:])
    if argv[:1] == ["preset"]:
        return _preset_main(argv[1:])
    progress, close = None, lambda: None
    try:
        args = _parse(argv)
        try:
            data = _load_images(args.dataset, args.data_home)
        except (OSError, ValueError, pickle.UnpicklingError) as exc:  # missing, corrupt or unsafe files
            print(f"skconvfeat: error: cannot load {args.dataset!r}: {exc}", file=sys.stderr)
            return 1
        _check_train_size(args.train_size, data[1])
        progress, close = _progress_bar()
        with _fits_on(args.scheduler):
            results, extras, transfer = _run(args, data, progress)
    except _Exit as exc:
        return exc.code
    except UsageError as exc:
        print(f"skconvfeat: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the data do not suit the study (e.g. a class too small to split)
        print(f"skconvfeat: error: {exc}", file=sys.stderr)
        return 1
    except SchedulerError as exc:
        print(f"skconvfeat: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        close()
        print("skconvfeat: interrupted", file=sys.stderr)
        return 130
    finally:
        close()
    print(json.dumps(results, indent=2) if args.json else to_text(study_document(results, transfer)))
    if args.out:
        try:
            write_report(results, extras, args.out, transfer=transfer)
        except (ImportError, OSError) as exc:  # the numbers are printed above: report and go on
            print(f"skconvfeat: error: cannot write the report to {str(args.out)!r}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # the folder holds the old report or the new one, never both
            print("skconvfeat: interrupted", file=sys.stderr)
            return 130
    return 0


class _Exit(Exception):
    """``--help``: argparse printed the help and wants to exit with ``code``."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _parse(argv):
    """Parse and check every option; raise UsageError (exit 2) before any work."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help
        raise _Exit(exc.code) from None
    args.settings = _settings(args)
    _check_dataset(args.dataset)
    args.out = _check_out(args.out)
    _check_extras(args)
    return args


def _run(args, data, progress):
    """The transfer experiment (unless --no-transfer), then run_study judging claim (c) from it.

    The holdout design when the dataset has a test set. Returns the study's
    results, its extras and the transfer results (None when not run).
    """
    images, target, test_images, test_target = data
    transfer = None
    if not args.no_transfer:
        transfer = run_transfer(images, target, args.settings, design="cv" if test_images is None else "holdout",
                                n_jobs=args.n_jobs, progress=progress)
    results, extras = run_study(images, target, args.settings, test_images=test_images, test_target=test_target,
                                transfer=transfer, n_jobs=args.n_jobs, progress=progress, return_extras=True)
    return results, extras, transfer


# --------------------------------------------------------------------------- skconvfeat report


def build_report_parser():
    """The argument parser of ``skconvfeat report``."""
    parser = _Parser(
        prog="skconvfeat report",
        description="Compare several studies on one page (e.g. MNIST and CIFAR-10 side by side): their verdicts, "
                    "the learned baseline check and every arm's accuracy with its interval.",
        allow_abbrev=False,
    )
    parser.add_argument("folders", nargs="+", metavar="DIR",
                        help="report folders written by 'skconvfeat --out DIR', shown in this order")
    parser.add_argument("--out", metavar="OUT", required=True,
                        help=f"write {' and '.join(COMPARISON_FILES)} to the folder OUT")
    return parser


def _report_main(argv):
    """``skconvfeat report``: 0 written; 1 a folder could not be read or OUT written; 2 a bad option."""
    try:
        args = build_report_parser().parse_args(argv)
        _check_out(args.out, COMPARISON_FILES)
    except SystemExit as exc:  # --help
        return exc.code
    except UsageError as exc:
        print(f"skconvfeat report: error: {exc}", file=sys.stderr)
        return 2
    try:
        paths = write_comparison(args.folders, args.out)
    except (ImportError, OSError, ValueError) as exc:  # unreadable or foreign results.json, unwritable OUT
        print(f"skconvfeat report: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # OUT holds the old comparison or the new one, never both
        print("skconvfeat report: interrupted", file=sys.stderr)
        return 130
    print(paths["comparison.html"])
    return 0


def build_curves_parser():
    """The argument parser of ``skconvfeat curves``."""
    parser = _Parser(
        prog="skconvfeat curves",
        description="The study at every training-set size under one protocol: every arm's settings chosen on "
                    "images held out of its training subset with equal budgets, networks trained to a validation "
                    "plateau, the official test set scored once per final model. Resumable with --cache.",
        allow_abbrev=False,
    )
    parser.add_argument("--dataset", required=True, help="a dataset with an official test split, e.g. mnist")
    parser.add_argument("--data-home", metavar="DIR", help="where the dataset's files are")
    parser.add_argument("--train-sizes", required=True, metavar="SIZES",
                        help="comma-separated training-set sizes, 'all' for the whole training set")
    parser.add_argument("--layers", default="1,2", metavar="DEPTHS", help="network depths (default: %(default)s)")
    parser.add_argument("--banks", default="random,gabor,kmeans", help="fixed banks (default: %(default)s)")
    parser.add_argument("--preset", help="also the wide data-derived preset NAME with its ridge head")
    parser.add_argument("--mixing", nargs="?", const="all", metavar="BANKS",
                        help="also each bank's kernels frozen with a learned 1x1 mixing after each layer; "
                             "BANKS (comma-separated) gives the mixing arms to these banks only")
    parser.add_argument("--batch-norm", action="store_true",
                        help="with --mixing: a batch normalisation after each layer's mixing (conv, 1x1, BN, "
                             "nonlinearity), compared with a learned network given the same normalisation")
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default="none",
                        help="also the frozen and the learned network trained on augmented batches: shifts of up "
                             "to an eighth of the image, and mirror images with crops+flips (for mirror-symmetric "
                             "classes, as CIFAR-10's; not digits) (default: %(default)s)")
    parser.add_argument("--head", choices=HEADS, default="linear",
                        help="mlp: also the frozen and the learned network with an MLP head (one hidden layer of "
                             "100 ReLU units), not augmented (default: %(default)s)")
    parser.add_argument("--seeds", type=_seed_caps, metavar="N[,N...]",
                        help="at most N seeds a size, or exactly N at each --train-sizes entry, one N each "
                             "(more than the default too) (default: 5 below 1,000 images, 3 up to 10,000, then 1)")
    parser.add_argument("--cache", metavar="DIR", help="keep each finished model's record here and reuse it")
    parser.add_argument("--out", metavar="DIR", help="write the curves' report to DIR")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where networks train")
    parser.add_argument("--margin", type=_margin, default=1.0, metavar="POINTS",
                        help="two arms within this many points count as equal (default: %(default)s)")
    _add_protocol_options(parser)
    return parser


def _add_protocol_options(parser):
    """The options that change CurveProtocol's rules (``curves`` and ``transfer``)."""
    parser.add_argument("--grid-extensions", type=_non_negative_int, default=CurveProtocol.grid_extensions, metavar="N",
                        help="when an arm's best setting (C, learning rate or ridge penalty) is an end of its grid, "
                             "try the next value out, and again while the newest wins, up to N more candidates an "
                             "arm, counted in the report (default: %(default)s, fixed grids)")
    parser.add_argument("--min-improvement", type=_improvement, default=0.0, metavar="POINTS",
                        help="a network's validation accuracy must rise by more than this to count as improving, "
                             "for its patience and for the check it keeps (default: %(default)s, any rise)")
    parser.add_argument("--budget-steps", type=_positive_int, default=CurveProtocol.min_budget_steps, metavar="N",
                        help="a network's budget: N optimiser steps or --budget-epochs passes over its training images, "
                             "whichever is more (default: %(default)s)")
    parser.add_argument("--budget-epochs", type=_positive_int, default=CurveProtocol.min_budget_epochs, metavar="N",
                        help="see --budget-steps (default: %(default)s)")


def _protocol(args):
    """The CurveProtocol of the parsed options (the default one when none was given)."""
    return CurveProtocol(min_improvement=args.min_improvement / 100, min_budget_steps=args.budget_steps,
                         min_budget_epochs=args.budget_epochs, grid_extensions=args.grid_extensions)


def _mixing(option):
    """``--mixing``'s value for plan_curves: absent False, bare True (every bank that can mix), else its banks."""
    return False if option is None else True if option == "all" else tuple(_split(option))


def _curves_main(argv):
    """``skconvfeat curves``: 0 done; 1 the data or the run failed; 2 a bad option; 130 interrupted."""
    from ._curve_report import CURVE_FILES, curve_document, write_curves
    from ._curves import plan_curves, run_curves

    try:
        args = build_curves_parser().parse_args(argv)
        out = _check_out(args.out, CURVE_FILES)
        _check_extras(args)
        sizes = ["all" if part == "all" else int(part) for part in _split(args.train_sizes)]
        depths = _parse_layers(args.layers)
        if args.batch_norm and not args.mixing:
            raise UsageError("argument --batch-norm: normalises the mixing arms; add --mixing")
        if args.seeds is not None and len(args.seeds) not in (1, len(sizes)):
            raise UsageError(f"argument --seeds: expected one count or one per --train-sizes entry ({len(sizes)}), "
                             f"got {len(args.seeds)}")
    except SystemExit as exc:
        return exc.code
    except ValueError:
        print(f"skconvfeat curves: error: argument --train-sizes: expected integers or 'all', got "
              f"{args.train_sizes!r}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"skconvfeat curves: error: {exc}", file=sys.stderr)
        return 2
    try:
        train = load_dataset(args.dataset, data_home=args.data_home, subset="train")
        test = load_dataset(args.dataset, data_home=args.data_home, subset="test")
        seeds = None if args.seeds is None else args.seeds[0] if len(args.seeds) == 1 else args.seeds
        plan = plan_curves(sizes, len(train.target), depths, tuple(_split(args.banks)), args.preset, seeds,
                           mixing=_mixing(args.mixing), augment=args.augment, head=args.head,
                           batch_norm=args.batch_norm)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        print(f"skconvfeat curves: error: {exc}", file=sys.stderr)
        return 1
    progress = _plain_progress()
    try:
        results = run_curves(train.images, train.target, test.images, test.target, plan, _protocol(args),
                             cache_dir=args.cache, device=args.device, margin=args.margin / 100, progress=progress)
        title = f"skconvfeat learning curves: {args.dataset}"
        print(to_text(curve_document(results, title)))
        if out is not None:
            write_curves(results, out, title)
    except KeyboardInterrupt:
        print("skconvfeat curves: interrupted; finished models are kept in --cache", file=sys.stderr)
        return 130
    return 0


def build_transfer_parser():
    """The argument parser of ``skconvfeat transfer``."""
    from ._transfer_curves import N_SOURCES, SOURCE_SIZE, TARGET_SIZES, TRANSFER_PAIRS

    parser = _Parser(
        prog="skconvfeat transfer",
        description="Claim (c) across datasets: kernels learned on a source dataset, frozen, with a new head on a "
                    "target dataset, against random fixed kernels, the same kernels fine-tuned and training from "
                    "scratch, at every target size, under the curves' protocol. Resumable with --cache.",
        allow_abbrev=False,
    )
    parser.add_argument("--pair", required=True, choices=sorted(TRANSFER_PAIRS), help="source and target")
    parser.add_argument("--data-home", metavar="DIR", help="where the datasets' files are")
    parser.add_argument("--sizes", default=",".join(map(str, TARGET_SIZES)), metavar="SIZES",
                        help="comma-separated target training-set sizes (default: %(default)s)")
    parser.add_argument("--source-size", type=_positive_int, default=SOURCE_SIZE, metavar="N",
                        help="source images each source network trains on (default: %(default)s)")
    parser.add_argument("--sources", type=_positive_int, default=N_SOURCES, metavar="N",
                        help="source networks (seeds); target seed i uses source i mod N (default: %(default)s)")
    parser.add_argument("--seeds", type=_positive_int, metavar="N",
                        help="at most N target seeds a size (default: 5 below 1,000 images, 3 up to 10,000)")
    parser.add_argument("--cache", metavar="DIR", help="keep source kernels and finished models here and reuse them")
    parser.add_argument("--out", metavar="DIR", help="write the report to DIR")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where networks train")
    parser.add_argument("--margin", type=_margin, default=1.0, metavar="POINTS",
                        help="two arms within this many points count as equal (default: %(default)s)")
    _add_protocol_options(parser)
    return parser


def _transfer_main(argv):
    """``skconvfeat transfer``: 0 done; 1 the data or the run failed; 2 a bad option; 130 interrupted."""
    from ._curve_report import CURVE_FILES, transfer_document, write_curves
    from ._transfer_curves import run_transfer_pair

    try:
        args = build_transfer_parser().parse_args(argv)
        out = _check_out(args.out, CURVE_FILES)
        _check_extras(args)
        sizes = [int(part) for part in _split(args.sizes)]
    except SystemExit as exc:
        return exc.code
    except ValueError:
        print(f"skconvfeat transfer: error: argument --sizes: expected integers, got {args.sizes!r}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"skconvfeat transfer: error: {exc}", file=sys.stderr)
        return 2
    try:
        results = run_transfer_pair(args.pair, args.data_home, args.cache, sizes=sizes, source_size=args.source_size,
                                    n_sources=args.sources, max_seeds=args.seeds, protocol=_protocol(args),
                                    device=args.device,
                                    margin=args.margin / 100, progress=_plain_progress())
        title = f"skconvfeat transfer: {args.pair}"
        print(to_text(transfer_document(results, title)))
        if out is not None:
            write_curves(results, out, title)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        print(f"skconvfeat transfer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("skconvfeat transfer: interrupted; finished models are kept in --cache", file=sys.stderr)
        return 130
    return 0


# --------------------------------------------------------------------------- skconvfeat preset


def _alphas(text):
    try:
        values = [float(part) for part in _split(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive numbers, got {text!r}")
    return values


def _transformer_param(text):
    """``KEY=VALUE`` as ``(key, value)``: a FixedConvTransformer parameter and its JSON value (a bare word: a string)."""
    key, sep, value = text.partition("=")
    names = sorted(FixedConvTransformer().get_params())
    if not sep or key not in names:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with KEY one of FixedConvTransformer's parameters {names}, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_preset_parser():
    """The argument parser of ``skconvfeat preset``."""
    from ._preset_run import PRESET_ALPHAS

    parser = _Parser(
        prog="skconvfeat preset",
        description="The wide data-derived preset NAME with its streamed ridge head on a whole training set, the "
                    "penalty chosen on a random tenth of it, the test set scored once: the recipe behind the "
                    "README's preset numbers.",
        allow_abbrev=False,
    )
    parser.add_argument("name", choices=sorted(PRESETS), help="the preset")
    parser.add_argument("--dataset", required=True,
                        help="a skconvfeat.datasets name with a test split, or the PATH of a train/test image folder")
    parser.add_argument("--data-home", metavar="DIR", help="where the dataset's files are")
    parser.add_argument("--flip", action="store_true", help="add every training image's left-right mirror")
    parser.add_argument("--shift", type=_non_negative_int, default=0, metavar="PIXELS",
                        help="add four copies of every training image moved PIXELS up, down, left and right "
                             "(default: 0, none)")
    parser.add_argument("--rotate", type=_rotation, default=0.0, metavar="DEGREES",
                        help="add two copies of every training image turned DEGREES (0-45) each way "
                             "(default: 0, none)")
    parser.add_argument("--alphas", type=_alphas, default=list(PRESET_ALPHAS), metavar="A,B,...",
                        help="candidate ridge penalties (default: %(default)s)")
    parser.add_argument("--train-size", type=_positive_int, metavar="N",
                        help="use N training images (a random subset, seed --seed; default: all)")
    parser.add_argument("--validate", type=_positive_int, metavar="N",
                        help="score N images held out of the training set instead of the test set (for choosing "
                             "settings; the test set stays unseen)")
    parser.add_argument("--chunk", type=_positive_int, default=2000, metavar="N",
                        help="images transformed per partial_fit call (default: %(default)s)")
    parser.add_argument("--set", type=_transformer_param, action="append", default=[], metavar="KEY=VALUE",
                        dest="overrides",
                        help="override a FixedConvTransformer parameter of the preset, VALUE read as JSON "
                             "(e.g. --set nonlinearity='\"two_sided_nearest\"' or --set pool_grid=null); repeatable")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patches and the held-out images")
    parser.add_argument("--checkpoint", metavar="DIR",
                        help="keep the head's sums in DIR while the training rows stream in, so that the same "
                             "command started again after an interruption goes on from there (each save is "
                             "8 x features^2 bytes: 6.6 GB at 28,800 features; deleted when the run ends)")
    parser.add_argument("--checkpoint-every", type=_non_negative_int, default=600, metavar="SECONDS",
                        help="seconds between checkpoint saves (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the results dict as JSON")
    return parser


def _stage_printer():
    """A ``progress(text)`` callable printing each finished stage on stderr with the time since the start: a
    full-set run takes from minutes to hours, and stdout stays for the results (``--json`` included)."""
    start = time.perf_counter()

    def say(text):
        print(f"skconvfeat: [{fmt.duration(time.perf_counter() - start)}] {text}", file=sys.stderr, flush=True)

    return say


def _preset_main(argv):
    """``skconvfeat preset``: 0 done; 1 the data could not be loaded or used; 2 a bad option; 130 interrupted."""
    from ._preset_run import run_preset, training_and_evaluation

    try:
        args = build_preset_parser().parse_args(argv)
        if args.dataset == "digits":
            raise UsageError("argument --dataset: digits has no test split; give a dataset that has one "
                             "(e.g. mnist) or a train/test image folder")
        _check_dataset(args.dataset)
    except SystemExit as exc:
        return exc.code
    except UsageError as exc:
        print(f"skconvfeat preset: error: {exc}", file=sys.stderr)
        return 2
    try:
        X, y, X_test, y_test = _load_images(args.dataset, args.data_home)
        if X_test is None:
            raise ValueError(f"{args.dataset} has no test split: the preset command scores one")
        X, y, X_test, y_test = training_and_evaluation(X, y, X_test, y_test, train_size=args.train_size,
                                                       validate=args.validate, seed=args.seed)
        results = run_preset(args.name, X, y, X_test, y_test, flip=args.flip, shift=args.shift,
                             rotate=args.rotate, alphas=args.alphas, chunk=args.chunk, random_state=args.seed,
                             progress=_stage_printer(), checkpoint=args.checkpoint,
                             checkpoint_every=args.checkpoint_every,
                             **dict(args.overrides))
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        print(f"skconvfeat preset: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("skconvfeat preset: interrupted", file=sys.stderr)
        return 130
    results["evaluated_on"] = "held-out training images" if args.validate else "test set"
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    scores = ", ".join(f"{a:g}: {s:.4f}" for a, s in zip(results["alphas"], results["validation_scores"]))
    copies = f" x {results['n_views']} copies" if results["n_views"] > 1 else ""
    print(f"{args.name} on {args.dataset}: {results['n_train']:,} training images{copies}, "
          f"{results['n_features']:,} features; held-out accuracy per penalty {{{scores}}}, chosen {results['alpha']:g}; "
          f"{results['evaluated_on']} ({results['n_test']:,} images, scored once): "
          f"{100 * results['test_accuracy']:.2f}%; {fmt.duration(sum(results['seconds'].values()))} in all, "
          f"peak memory {results['peak_memory_gib']:.1f} GiB.")
    return 0
