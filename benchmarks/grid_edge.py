"""Does the curves' 4-value grid of the logistic C cost the fixed arms accuracy? Held-out images only.

    python benchmarks/grid_edge.py --dataset mnist --data-home ../shared/data --sizes 1000,3000,10000 \
        --cache docs/studies/mnist-curves-records
    python benchmarks/grid_edge.py --pair cifar10-to-mnist --data-home ../shared/data --sizes 1000,3000,10000 \
        --cache docs/studies/transfer-cifar10-to-mnist-records

The curve protocol (``CurveProtocol``) gives every arm 4 candidate settings; for the logistic head that
is C in {0.01, 0.1, 1, 10}, and the recorded curves often chose an end of it. This script refits the
fixed arms (and raw pixels) of the recorded curves -- same subsets, same splits, same seed -- with the
grid widened by one decade and a half each way, C in {3e-4, 1e-3, 3e-3, 0.01, 0.1, 1, 10, 30, 100, 300},
and reports, per arm and size, the best held-out accuracy within the study's 4 values and within all 10.
With ``--pair`` it does the same for a transfer pair's two logistic arms (the source's kernels frozen, read
from the transfer run's cache, and random fixed kernels), where the study's choices sat at an end most often.
The difference bounds what the fixed arms lost to the grid's ends (what the networks' learning-rate grid
cost them is not measured here). The test set is never loaded, so this adds no test evaluation.

``--count-edges FOLDER`` fits nothing: it counts, from a run's cached records, how often each kind of arm chose
the lowest or the highest of its candidates (C, learning rate or ridge penalty), by size.

``--grid`` tries other values (at least one of the study's, the comparison's baseline) and ``--arms`` picks
arms: at the largest sizes, only the values beyond the end the study chose are worth their minutes.

The "recorded" column checks the script against the study: the validation accuracy in the cached record
(``--cache``). The best of the study's values here equals it when the record was computed in this
environment; k-means kernels move with the floating-point environment (``skconvfeat/study/_environment.py``),
so for them it may not.
"""

import argparse
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from skconvfeat.datasets import load_dataset
from skconvfeat.study._curves import CurveProtocol, balanced_subset, curve_arms, fit_arm, read_record
from skconvfeat.study._environment import environment
from skconvfeat.study._transfer_curves import adapt_kernels, n_channels, prepare_pair, transfer_arms

# The study's 4 values and three more a decade and a half each way: wide enough that a choice at its new end
# would itself be a finding.
WIDE_C = (3e-4, 1e-3, 3e-3, 0.01, 0.1, 1.0, 10.0, 30.0, 100.0, 300.0)


# The protocol's grid each kind of arm chooses on.
GRID_OF = {"raw": "logistic_C", "fixed": "logistic_C", "preset": "ridge_alphas", "frozen": "learning_rates",
           "learned": "learning_rates", "mixing": "learning_rates"}


def _wide_protocol(grid, field="logistic_C", **training):
    """The study's protocol with its ``field`` grid replaced by ``grid`` (the other grids cut or padded to its
    length, unused by the arm, so that the protocol's equal-budget check still holds); ``training`` replaces
    the networks' stop rule and budget (``min_improvement``, ``min_budget_steps``, ``min_budget_epochs``) as
    a plateau-rule run's ``--min-improvement``/``--budget-steps``/``--budget-epochs`` did."""
    base = replace(CurveProtocol(), **training)

    def fit(values):
        return (tuple(values) + tuple(values[-1:]) * len(grid))[: len(grid)]

    grids = {name: fit(getattr(base, name)) for name in set(GRID_OF.values())}
    return replace(base, **{**grids, field: tuple(grid)}).check()


def _curve_task(args):
    """``(images, target, arms_for(seed), record_folder)`` of a learning curve's plain arms (by default, with
    no ``--arms``, its fixed arms and raw pixels)."""
    train = load_dataset(args.dataset, data_home=args.data_home, subset="train")
    every = curve_arms((1, 2, 3), preset=args.preset)
    arms = every if args.arms else [arm for arm in every if arm.kind in ("raw", "fixed") and arm.depth <= 2]
    return train.images, train.target, lambda seed: arms, args.cache


def _transfer_task(args):
    """The same for a transfer pair's logistic arms; target seed i uses source network i mod n_sources, whose
    kernels the transfer run cached (an .npz of arrays, read without pickle)."""
    data = prepare_pair(args.pair, args.data_home)
    sources = sorted(Path(args.cache, "sources").glob("seed*.npz"), key=lambda path: int(path.stem[4:]))
    if not sources:
        raise SystemExit(f"no source kernels in {args.cache}/sources: run the transfer command first")

    def arms_for(seed):
        with np.load(sources[seed % len(sources)], allow_pickle=False) as stored:
            kernels = [stored[f"layer{i}"] for i in range(json.loads(str(stored["record"]))["n_layers"])]
        kernels = adapt_kernels(kernels, n_channels(data.target_images))
        return [arm for arm in transfer_arms(kernels) if arm.kind == "fixed"]

    return data.target_images, data.target_target, arms_for, Path(args.cache, "targets")


def _network_note(record):
    """For a network, where its chosen setting's best check fell in its budget, and whether it converged."""
    if "steps" not in record:
        return ""
    state = "converged" if record["converged"] else "not converged (budget reached)"
    return f"; best check at {record['steps']:,} of {record['budget_steps']:,} steps, {state}"


def _recorded(cache, arm, size, seed):
    """The study's held-out accuracy for ``arm`` in its record under ``cache``, or None (absent or unreadable)."""
    record = read_record(Path(cache) / arm.name / f"n{size}-s{seed}.json", "arm", arm.name) if cache else None
    return None if record is None else record.get("validation_accuracy")


# Size bands of the edge count: where cross-validation chooses, the plateau-rule sizes, and the full sets.
BANDS = ((1000, "up to 1,000"), (10_000, "3,000-10,000"), (float("inf"), "full set"))


def count_edges(folder):
    """Print, per kind of arm and size band, how many records chose the first, an inner or the last candidate.

    Plain arms only (the augmented, MLP-head, normalised and mixing variants are left out); a record that
    is not a readable JSON object with its validation scores is skipped (records are untrusted input)."""
    counts = {}
    for path in sorted(Path(folder).glob("*/n*-s*.json")):
        arm = path.parent.name
        if any(tag in arm for tag in ("crops", "mlp", "bn", "mixing")):
            continue
        record = read_record(path, "arm", arm)
        try:
            scores = [float(v) for v in record["validation_scores"]]
            size = int(record["size"])
        except (KeyError, TypeError, ValueError):  # None, or a record without usable scores
            continue
        if len(scores) < 2:
            continue
        # "fixed-kmeans-d2" -> "fixed d2"; "raw", "preset-coates-mnist" -> "raw", "preset".
        depth = arm.rsplit("-", 1)[-1]
        kind = arm.split("-")[0] + (f" {depth}" if re.fullmatch(r"d\d+", depth) else "")
        band = next(label for limit, label in BANDS if size <= limit)
        best = int(np.argmax(scores))
        where = "first" if best == 0 else "last" if best == len(scores) - 1 else "inner"
        entry = counts.setdefault((kind, band), {"first": 0, "inner": 0, "last": 0})
        entry[where] += 1
    order = [label for _, label in BANDS]
    print("| arm kind | sizes | first candidate | inner | last candidate |")
    print("|---|---|---|---|---|")
    for (kind, band), entry in sorted(counts.items(), key=lambda item: (item[0][0], order.index(item[0][1]))):
        print(f"| {kind} | {band} | {entry['first']} | {entry['inner']} | {entry['last']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--count-edges", metavar="FOLDER", help="a run's record folder: count its grid-end choices")
    source.add_argument("--dataset", help="a learning curve's dataset, e.g. mnist")
    source.add_argument("--pair", help="a transfer pair, e.g. cifar10-to-mnist (needs --cache)")
    parser.add_argument("--data-home")
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--seeds", default="0", help="comma-separated subset seeds, as the study's (default: 0)")
    parser.add_argument("--cache", help="the curves' record folder, to check the study's choice is reproduced")
    parser.add_argument("--grid", default=",".join(f"{c:g}" for c in WIDE_C),
                        help="values to try of each arm's own setting (C, learning rate or ridge penalty), at "
                             "least one of the study's (default: the wide C grid)")
    parser.add_argument("--arms", help="comma-separated arm names, e.g. fixed-kmeans-d2,learned-d2 (default: every "
                                       "logistic arm)")
    parser.add_argument("--preset", help="the curves' preset, for its arm (preset-NAME) in --arms")
    defaults = CurveProtocol()
    parser.add_argument("--min-improvement", type=float, default=100 * defaults.min_improvement, metavar="POINTS",
                        help="the networks' stop rule, as the curves' option (default: %(default)s)")
    parser.add_argument("--budget-steps", type=int, default=defaults.min_budget_steps, metavar="N",
                        help="the networks' budget in steps, as the curves' option (default: %(default)s)")
    parser.add_argument("--budget-epochs", type=int, default=defaults.min_budget_epochs, metavar="N",
                        help="the networks' budget in epochs, as the curves' option (default: %(default)s)")
    args = parser.parse_args(argv)
    training = {"min_improvement": args.min_improvement / 100, "min_budget_steps": args.budget_steps,
                "min_budget_epochs": args.budget_epochs}
    if args.count_edges:
        return count_edges(args.count_edges)
    if not args.data_home:
        parser.error("--data-home is required to fit")
    try:
        grid = tuple(sorted(float(c) for c in args.grid.split(",")))
    except ValueError:
        parser.error(f"argument --grid: expected comma-separated numbers, got {args.grid!r}")
    if not all(value > 0 for value in grid):
        parser.error(f"argument --grid: expected positive values, got {args.grid!r}")
    wanted = None if args.arms is None else set(args.arms.split(","))
    try:  # the stop rule and budget checked before any data is read
        _wide_protocol(grid, **training)
    except ValueError as exc:
        parser.error(f"--min-improvement / --budget-steps / --budget-epochs: {exc}")

    images, target, arms_for, records = (_transfer_task if args.pair else _curve_task)(args)
    unknown = sorted((wanted or set()) - {arm.name for arm in arms_for(0)})
    if unknown:
        parser.error(f"argument --arms: unknown arms {unknown}; choose from {sorted(a.name for a in arms_for(0))}")
    print(f"# {args.pair or args.dataset}, seeds {args.seeds}, grid {grid}; held-out accuracy, best of the "
          "study's values in the grid / of all")
    print(f"# {environment()}")
    print("| arm | images | seed | recorded | best of the study's values (setting) | best of all (setting) | "
          "gain, points |")
    print("|---|---|---|---|---|---|---|")
    gains = []
    for size, seed in ((int(n), int(s)) for n in args.sizes.split(",") for s in args.seeds.split(",")):
        rows = balanced_subset(target, size, seed)
        X, y = images[rows], target[rows]
        for arm in (a for a in arms_for(seed) if wanted is None or a.name in wanted):
            field = GRID_OF[arm.kind]
            study = [i for i, c in enumerate(grid) if c in getattr(CurveProtocol(), field)]
            if not study:
                parser.error(f"--grid must hold at least one of the study's {field} for {arm.name}")
            start = time.perf_counter()
            _, record = fit_arm(arm, X, y, _wide_protocol(grid, field, **training), seed)
            scores = np.asarray(record["validation_scores"])
            in_study = max(study, key=lambda i: scores[i])
            best = int(np.argmax(scores))
            gain = 100 * (scores[best] - scores[in_study])
            gains.append(gain)
            recorded = _recorded(records, arm, size, seed)
            shown = "-" if recorded is None else f"{100 * recorded:.2f}%"
            print(f"| {arm.label} | {size:,} | {seed} | {shown} | {100 * scores[in_study]:.2f}% ({grid[in_study]:g}) | "
                  f"{100 * scores[best]:.2f}% ({grid[best]:g}) | {gain:+.2f} | "
                  f"<!-- {time.perf_counter() - start:.0f} s{_network_note(record)} -->", flush=True)
    print(f"# {sum(g > 0 for g in gains)} of {len(gains)} arm-sizes gain from the wider grid; "
          f"largest gain {max(gains):.2f} points, mean {np.mean(gains):.2f}")


if __name__ == "__main__":
    main()
