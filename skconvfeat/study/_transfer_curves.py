"""Transfer across datasets under the learning-curve protocol: are kernels learned elsewhere worth freezing?

Claim (c) of the seed, in its own sense: kernels trained on *another* dataset, frozen, with a new
head trained on the target, against the alternatives a practitioner has. For each pair of
(source, target) images:

* **Source kernels.** The study's 2-layer network (``_design.description("random", 2, seed)``) is
  trained end to end by ``LearnedConvClassifier`` on a class-balanced subset of the source
  (``source_size`` images, one model per source seed), chosen and trained to a validation plateau
  by the protocol's ``fit_arm`` exactly like a learned arm of the curves. Its trained kernels
  (``filters_``, one array per layer) are the transferred bank.
* **Target arms**, at every target size, on class-balanced subsets of the target's training images
  (``seeds_for_size`` seeds; target seed ``i`` uses source seed ``i mod n_sources``), every one
  with the protocol's candidates (equal budgets): the transferred kernels frozen with a logistic
  head (``C`` chosen like the fixed arms), random fixed kernels with the same head, the same network
  fine-tuned (initialised from the source kernels, all layers trained by Adam, learning rate
  chosen and trained to a plateau like the learned arms) and the network trained from scratch
  (random initialisation). Each final model scores the target's official test images (restricted
  to the target's classes) once.
* **Statistics valid with few pairs**, per size and comparison: the paired test over test images
  (``paired_holdout_test``: thousands of pairs, conditional on the fitted models) decides the
  outcome (``practical_outcome``: equal within the margin is practical equality), and the exact
  sign-flip test over the seeds' accuracy differences says how far the seeds alone carry it (with
  n seeds it cannot go below ``2 / 2**n``; that floor is reported beside it). Each test is
  Holm-corrected over the size's family of comparisons.

Channels. Grey here is the mean of the colour channels (not a luma weighting), so that the two
directions agree: a source trained on grey images gives one-channel first-layer kernels, which on
a colour target are handed to ``FixedConvTransformer`` as 2-D kernels; it spreads such a kernel
evenly over the channels (``k / 3`` on each of R, G, B), i.e. applies it to the grey image.

Everything finished is cached under ``cache_dir`` (source kernels as ``.npz``, target records as
JSON, each written whole or not at all and keyed by the protocol, the data and, for the arms that
use them, the source kernels), so a stopped run continues where it stopped.
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._curves import (
    SELECTION_ONLY,
    CurveArm,
    CurveProtocol,
    arm_grid,
    balanced_subset,
    extra_candidates,
    fit_arm,
    outcomes_text,
    practical_outcome,
    reuse_or_grow,
    run_one,
    seeds_for_size,
    stored_record,
    summarise_arms,
    unpack_correct,
    write_atomic,
)
from ._environment import environment_counts
from ._stats import holm, is_judged, paired_holdout_test, sign_flip_test

__all__ = ["TRANSFER_PAIRS", "TransferData", "prepare_pair", "run_transfer", "run_transfer_pair"]

# The depth of the transferred network: the study's 2-layer CNN.
DEPTH = 2
TARGET_SIZES = (20, 50, 100, 300, 1000, 3000)
SOURCE_SIZE = 10_000
N_SOURCES = 3
CIFAR10_VEHICLES = (0, 1, 8, 9)  # airplane, automobile, ship, truck
CIFAR10_ANIMALS = (2, 3, 4, 5, 6, 7)  # bird, cat, deer, dog, frog, horse


@dataclass(frozen=True)
class TransferPair:
    """Where the kernels are learned and where they are reused (``classes=None``: all classes)."""

    source: str
    target: str
    source_classes: tuple = None
    target_classes: tuple = None
    source_grey: bool = False
    description: str = ""


TRANSFER_PAIRS = {
    "cifar10-to-mnist": TransferPair(
        "cifar10-jpeg", "mnist", source_grey=True,
        description="CIFAR-10 (JPEG copy) in grey, 32x32, one channel -> MNIST 28x28: the kernels apply as they are"),
    "mnist-to-cifar10": TransferPair(
        "mnist", "cifar10-jpeg",
        description="MNIST -> CIFAR-10 (JPEG copy) in colour: each one-channel first-layer kernel is applied to "
                    "every RGB channel and divided by 3, i.e. to the grey (channel-mean) image"),
    "vehicles-to-animals": TransferPair(
        "cifar10-jpeg", "cifar10-jpeg", CIFAR10_VEHICLES, CIFAR10_ANIMALS,
        description="CIFAR-10 (JPEG copy) vehicles (airplane, automobile, ship, truck) -> the six animal classes, "
                    "both in colour"),
}

# The arms at every target size: name -> (label, kind, kernels from the source?).
TRANSFER_ARMS = {
    "transfer-frozen": ("Transferred kernels, frozen (logistic head)", "fixed", True),
    "random-fixed": ("Random kernels, fixed (logistic head)", "fixed", False),
    "fine-tuned": ("Transferred kernels, fine-tuned (Adam)", "learned", True),
    "scratch": ("Random init, trained from scratch (Adam)", "learned", False),
}
# The comparisons of claim (c) at each size, transferred frozen kernels minus the reference:
# role -> (reference arm, its name in the verdict, what the claim says).
TRANSFER_COMPARISONS = {
    "beats-random": ("random-fixed", "random fixed kernels", "beat random fixed kernels"),
    "matches-fine-tuned": ("fine-tuned", "the fine-tuned network", "match the fine-tuned network"),
    "beats-scratch": ("scratch", "training from scratch", "beat training from scratch"),
}
# Outcomes (transferred frozen - reference) under which each role's claim holds.
HOLDS = {"beats-random": ("higher",), "matches-fine-tuned": ("equivalent", "higher"), "beats-scratch": ("higher",)}


# -- image and kernel conversions ---------------------------------------------------------


def to_grey(images):
    """Grey images: the mean of the colour channels of ``(n, h, w, c)`` images; grey ones as given.

    The mean is float32 (float64 for float64 images): exact for 8-bit pixels to a few parts in 1e7.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        return images
    if images.ndim != 4:
        raise ValueError(f"Expected images shaped (n, h, w) or (n, h, w, c). Got shape {images.shape}.")
    return images.mean(axis=-1, dtype=np.result_type(images.dtype, np.float32))


def restrict_classes(images, target, classes):
    """The images (and labels) of ``classes`` only; ``None`` keeps all. Labels are kept as they are."""
    if classes is None:
        return images, target
    missing = sorted(set(classes) - set(np.unique(target).tolist()))
    if missing:
        raise ValueError(f"Classes {missing} have no images (labels present: {np.unique(target).tolist()}).")
    keep = np.isin(target, classes)
    return images[keep], target[keep]


def n_channels(images):
    """Channels of ``(n, h, w)`` (1) or ``(n, h, w, c)`` images."""
    return 1 if np.ndim(images) == 3 else int(np.shape(images)[-1])


def adapt_kernels(kernels, channels):
    """The source's kernels (one ``(n_filters, c, kh, kw)`` array per layer) for images of ``channels``.

    First-layer kernels of one channel on colour images become 2-D kernels, which
    ``FixedConvTransformer`` spreads evenly over the channels (``k / channels`` each): the kernel
    applied to the grey, channel-mean image. Deeper layers see the previous layer's maps, unchanged.
    """
    first = np.asarray(kernels[0])
    if first.ndim != 4:
        raise ValueError(f"Kernels must be shaped (n_filters, n_channels, kh, kw). Got {first.shape}.")
    if first.shape[1] == channels:
        return tuple(kernels)
    if first.shape[1] == 1:
        return (first[:, 0], *kernels[1:])
    raise ValueError(f"Kernels of {first.shape[1]} channels cannot be applied to images of {channels} channel(s).")


# -- data ---------------------------------------------------------------------------------------


@dataclass
class TransferData:
    """The arrays of one pair: the source's training (and optional test) images, the target's both."""

    source_images: np.ndarray
    source_target: np.ndarray
    target_images: np.ndarray
    target_target: np.ndarray
    test_images: np.ndarray
    test_target: np.ndarray
    source_test_images: np.ndarray = None
    source_test_target: np.ndarray = None


def prepare_pair(name, data_home):
    """Load and convert the datasets of ``TRANSFER_PAIRS[name]`` from ``data_home`` (never downloads)."""
    from ..datasets import load_dataset

    if name not in TRANSFER_PAIRS:
        raise ValueError(f"Unknown transfer pair {name!r}; choose from {sorted(TRANSFER_PAIRS)}.")
    pair = TRANSFER_PAIRS[name]
    loaded = {}

    def load(dataset, subset):
        if (dataset, subset) not in loaded:
            bunch = load_dataset(dataset, data_home=data_home, subset=subset, download_if_missing=False)
            loaded[dataset, subset] = (bunch.images, bunch.target)
        return loaded[dataset, subset]

    def side(dataset, subset, classes, grey):
        images, target = restrict_classes(*load(dataset, subset), classes)
        return (to_grey(images) if grey else images), target

    return TransferData(*side(pair.source, "train", pair.source_classes, pair.source_grey),
                        *side(pair.target, "train", pair.target_classes, False),
                        *side(pair.target, "test", pair.target_classes, False),
                        *side(pair.source, "test", pair.source_classes, pair.source_grey))


# -- the cache: each file written whole or not at all ----------------------------------------


def _digest(*parts):
    """A short hash of arrays and JSON-able values (arrays by dtype, shape and bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _load_source(path, key):
    """``(kernels, record)`` cached under ``key`` at ``path``, or None (absent, unreadable, other key)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            record = json.loads(str(stored["record"]))
            kernels = [stored[f"layer{i}"] for i in range(record["n_layers"])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (kernels, record) if record.get("key") == key else None


def _save_source(path, kernels, record):
    arrays = {f"layer{i}": k for i, k in enumerate(kernels)}
    write_atomic(path, lambda handle: np.savez(handle, record=np.array(json.dumps(record)), **arrays))


# -- source kernels ---------------------------------------------------------------------------


SOURCE_ARM = CurveArm("source", "Source network, trained (Adam)", "learned", DEPTH)


def train_source(images, target, size, seed, protocol, device="cpu", test_images=None, test_target=None,
                 known=None):
    """Train the source network on a balanced subset of ``size`` images: ``(kernels, record)``.

    ``kernels`` are the trained ``filters_``, one ``(n_filters, c, kh, kw)`` array per layer; the
    record has the chosen learning rate, validation accuracy, convergence, fit times and, given
    the source's test images, its test accuracy. With ``known`` (see ``fit_arm``) a choice among
    them trains nothing new: ``kernels`` is None and the record holds the selection only.
    """
    from ..learned import LearnedConvClassifier

    subset = balanced_subset(target, size, seed)
    wall, cpu = time.perf_counter(), time.process_time()
    predict, record = fit_arm(SOURCE_ARM, images[subset], target[subset], protocol, seed, device, known)
    record.update(fit_wall=time.perf_counter() - wall, fit_cpu=time.process_time() - cpu)
    if predict is None:
        return None, {**record, SELECTION_ONLY: True}
    model = getattr(predict, "__self__", None)  # fit_arm hands back the final network's bound predict
    if not isinstance(model, LearnedConvClassifier):
        raise TypeError(f"fit_arm returned a predict of {type(model).__name__}; expected a LearnedConvClassifier's.")
    if test_images is not None:
        record["test_accuracy"] = float(np.mean(predict(test_images) == test_target))
    record.update(size=int(size), seed=int(seed), n_layers=len(model.filters_))
    return [np.asarray(k, dtype=np.float64) for k in model.filters_], record


def _sources(data, source_size, n_sources, protocol, device, cache_dir, progress):
    """Each source seed's kernels and record, trained, read from the cache or grown on from it."""
    sources = []
    for seed in range(n_sources):
        path = None if cache_dir is None else Path(cache_dir) / "sources" / f"seed{seed}.npz"
        sources.append(_source(data, source_size, seed, protocol, device, path))
        progress(f"source network, seed {seed}")
    return sources


def _source(data, size, seed, protocol, device, path):
    """One source network's ``(kernels, record)``; with a cache ``path``, as ``reuse_or_grow`` decides."""
    subset = balanced_subset(data.source_target, size, seed)
    kernels = {}  # "found": the cached network's; "trained": this run's, when it trained a new model

    def key(p):
        return _digest(p.digest(), DEPTH, data.source_images[subset], data.source_target[subset], seed)

    def find(p):
        cached = _load_source(path, key(p))
        if cached is not None:
            kernels["found"] = cached[0]
        return None if cached is None else cached[1]

    def train(known):
        trained, record = train_source(data.source_images, data.source_target, size, seed, protocol, device,
                                       data.source_test_images, data.source_test_target, known)
        if trained is not None:
            kernels["trained"] = trained
            record["key"] = key(protocol)
        return record

    if path is None:
        record = train(None)
        return kernels["trained"], record
    record, changed = reuse_or_grow(protocol, arm_grid(SOURCE_ARM.kind, protocol), find, train)
    source = kernels.get("trained", kernels.get("found")), record
    if changed:
        _save_source(path, *source)
    return source


# -- target arms ------------------------------------------------------------------------------


def transfer_arms(kernels=None):
    """The target's arms; those of the transferred kernels carry ``kernels`` (a tuple, one per layer)."""
    return [CurveArm(name, label, kind, DEPTH, kernels if from_source else "random")
            for name, (label, kind, from_source) in TRANSFER_ARMS.items()]


def _check_sizes(sizes, n_target):
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 10 or sizes[-1] > n_target:
        raise ValueError(f"Target sizes must lie in [10, {n_target}]. Got {sizes}.")
    return sizes


def run_transfer(data, *, sizes=TARGET_SIZES, source_size=SOURCE_SIZE, n_sources=N_SOURCES, protocol=None,
                 cache_dir=None, device="cpu", margin=0.01, max_seeds=None, pair=None, progress=None):
    """Learn kernels on ``data``'s source, reuse them on its target at every size: the results dict.

    Parameters
    ----------
    data : TransferData
        The arrays (``prepare_pair`` loads those of a named pair).
    sizes : sequence of int
        Target training-set sizes (class-balanced subsets, ``seeds_for_size`` seeds each, at
        most ``max_seeds`` if given).
    source_size, n_sources : int
        Images of each source network's balanced subset, and how many source networks (seeds).
    protocol : CurveProtocol, default=None
        ``CurveProtocol()`` when None.
    cache_dir : path, default=None
        Where finished source kernels and target records are kept; a later call with the same
        protocol, data and settings reuses them (an interrupted run continues).
    pair : str, default=None
        Name of the pair, recorded in the results (``TRANSFER_PAIRS``' description with it).
    progress : callable, default=None
        ``progress(done, total, label)`` after every source network and target record.
    """
    protocol = (protocol or CurveProtocol()).check()
    sizes = _check_sizes(sizes, data.target_target.size)
    if not 1 <= int(n_sources) or int(source_size) > data.source_target.size:
        raise ValueError(f"Need n_sources >= 1 and source_size <= {data.source_target.size} source images. "
                         f"Got {n_sources} and {source_size}.")
    seeds = {s: list(range(seeds_for_size(s) if max_seeds is None else min(max_seeds, seeds_for_size(s))))
             for s in sizes}
    total = n_sources + len(TRANSFER_ARMS) * sum(len(v) for v in seeds.values())
    done, started = [0], time.perf_counter()

    def step(label):
        done[0] += 1
        if progress is not None:
            progress(done[0], total, label)

    sources = _sources(data, source_size, n_sources, protocol, device, cache_dir, step)
    channels = n_channels(data.target_images)
    target_keys = {}  # digest of a protocol -> the key of the target data under it

    def record_key(p, source_key):
        if p.digest() not in target_keys:
            target_keys[p.digest()] = _digest(p.digest(), data.target_images, data.target_target, data.test_images,
                                              data.test_target)
        return _digest(target_keys[p.digest()], source_key)

    records = []
    for size in sizes:  # small sizes first: a stopped run has the cheap end of every curve
        for seed in seeds[size]:
            source_seed = seed % n_sources
            kernels = adapt_kernels(sources[source_seed][0], channels)
            for arm in transfer_arms(kernels):
                from_source = TRANSFER_ARMS[arm.name][2]
                source_key = sources[source_seed][1]["key"] if from_source else None

                def train(known, arm=arm, size=size, seed=seed, source_key=source_key, from_source=from_source):
                    record = run_one(arm, data.target_images, data.target_target, data.test_images,
                                     data.test_target, size, seed, protocol, device, known)
                    if SELECTION_ONLY not in record:
                        record.update(key=record_key(protocol, source_key),
                                      source_seed=source_seed if from_source else None)
                    return record

                path = None if cache_dir is None else Path(cache_dir) / "targets" / arm.name / f"n{size}-s{seed}.json"
                records.append(stored_record(path, protocol, arm_grid(arm.kind, protocol),
                                             lambda p, source_key=source_key: ("key", record_key(p, source_key)),
                                             train))
                step(f"{TRANSFER_ARMS[arm.name][0]} at {size} images, seed {seed}")
    return summarise_transfer(records, sizes, seeds, [s[1] for s in sources], protocol, margin,
                              time.perf_counter() - started, pair)


def run_transfer_pair(name, data_home, cache_dir, **settings):
    """Run the named pair of ``TRANSFER_PAIRS`` end to end (data from ``data_home``, resumable in ``cache_dir``)."""
    return run_transfer(prepare_pair(name, data_home), cache_dir=cache_dir, pair=name, **settings)


# -- statistics, times and the verdict ----------------------------------------------------------


def _by_seed(records, arm, size):
    return sorted((r for r in records if r["arm"] == arm and r["size"] == size), key=lambda r: r["seed"])


def _compare(records, reference, size, margin):
    """Transferred frozen kernels minus ``reference`` at ``size``: per test image and per seed."""
    mine, theirs = _by_seed(records, "transfer-frozen", size), _by_seed(records, reference, size)
    if [r["seed"] for r in mine] != [r["seed"] for r in theirs] or not mine:
        raise ValueError(f"The arms at {size} images have different seeds: nothing to pair.")
    correct = [np.array([unpack_correct(r["test_correct"], r["n_test"]) for r in rs]) for rs in (mine, theirs)]
    images = paired_holdout_test(*correct, margin=margin)
    seeds = sign_flip_test([a["test_accuracy"] - b["test_accuracy"] for a, b in zip(mine, theirs)])
    keys = ("mean_diff", "ci_low", "ci_high", "p_value", "equivalence_p_value", "test")
    return {"arm": "transfer-frozen", "reference": reference, "size": size, **{k: images[k] for k in keys},
            "seed_p_value": seeds["p_value"], "seed_min_p_value": seeds["min_p_value"], "seeds": seeds["n"],
            "seeds_positive": seeds["positive"], "seeds_negative": seeds["negative"], "seed_test": seeds["test"]}


def transfer_comparisons(arms, records, sizes, margin):
    """Per size, the family of claim (c)'s comparisons, each test Holm-corrected over the family."""
    comparisons = []
    for size in sizes:
        family = [{**_compare(records, reference, size, margin), "role": role}
                  for role, (reference, _, _) in TRANSFER_COMPARISONS.items()]
        for c, p, seed_p in zip(family, holm([c["p_value"] for c in family]),
                                holm([c["seed_p_value"] for c in family])):
            converged = [arms[name]["sizes"][size]["converged"] for name in (c["arm"], c["reference"])]
            c.update(holm_p=float(p), seed_holm_p=float(seed_p), outcome=practical_outcome({**c, "p_value": p}))
            c.update(judged=is_judged(c["outcome"], *converged), a_fortiori=not all(converged))
            c["a_fortiori"] = c["judged"] and c["a_fortiori"]
        comparisons += family
    return comparisons


def transfer_times(arms, sizes, sources):
    """Mean fit wall and CPU seconds per arm and size, and what the frozen transferred kernels save."""
    times = {}
    for size in sizes:
        fit = {name: {k: arms[name]["sizes"][size][k] for k in ("fit_wall", "fit_cpu")} for name in TRANSFER_ARMS}
        frozen = fit["transfer-frozen"]
        times[size] = {"fit": fit, **{f"saved_vs_{ref}": {k: fit[ref][k] - frozen[k] for k in frozen}
                                       for ref in ("fine-tuned", "scratch")}}
    one_off = {k: float(np.mean([s[k] for s in sources])) for k in ("fit_wall", "fit_cpu")}
    return {"by_size": times, "source_fit_mean": one_off,
            "note": "Fit times exclude scoring the test set; the transferred arms' kernels cost one source "
                    "training each (the source fit below, paid once per source seed and shared by every size)."}


def _at(sizes):
    return "at " + ", ".join(f"{s:,}" for s in sizes) + " images" if sizes else "at no size tested"


def transfer_verdict(comparisons, sources, margin):
    """Claim (c) for one pair: the sizes at which each part holds, is refuted, undecided or not judged."""
    parts, texts = {}, []
    for role, (_, reference, claim) in TRANSFER_COMPARISONS.items():
        by = {}
        for c in comparisons:
            if c["role"] == role:
                by.setdefault("not judged" if not c["judged"] else c["outcome"], []).append(c["size"])
        holds = sorted(s for outcome in HOLDS[role] for s in by.get(outcome, []))
        parts[role] = {"holds_at": holds, "by_outcome": by}
        texts.append(f"{claim} {_at(holds)} (frozen transferred kernels are {outcomes_text(by, reference, margin)})")
    unconverged = [s["seed"] for s in sources if not s["converged"]]
    caveat = ("" if not unconverged else f" The source network of seed(s) {unconverged} stopped at its budget still "
              "improving: its kernels are what a budget-capped run learned.")
    return {"claim": "c", "parts": parts,
            "text": "Transferred frozen kernels " + "; ".join(texts) + ". Outcomes from the paired test over "
                    "test images (Holm over each size's family); the exact sign-flip test over seeds is beside "
                    "each, with the least p-value its number of seeds allows." + caveat}


def summarise_transfer(records, sizes, seeds, sources, protocol, margin, wall, pair=None):
    """The results dict of one pair: arms x sizes, comparisons, times, sources and claim (c)'s verdict."""
    arms = summarise_arms(transfer_arms(), sizes, records)
    comparisons = transfer_comparisons(arms, records, sizes, margin)
    source_keys = ("seed", "size", "setting", "validation_accuracy", "converged", "steps", "budget_steps",
                   "fit_wall", "fit_cpu", "test_accuracy", "extra_candidates")
    sources = [{k: s.get(k) for k in source_keys} for s in sources]
    return {"kind": "transfer_curves",
            "pair": None if pair is None else {"name": pair, **asdict(TRANSFER_PAIRS[pair])},
            "protocol": {**asdict(protocol), "digest": protocol.digest(), "n_candidates": protocol.n_candidates},
            "sizes": sizes, "seeds": {str(s): len(v) for s, v in seeds.items()}, "depth": DEPTH,
            "sources": sources, "arms": arms, "comparisons": comparisons, "margin": margin,
            "times": transfer_times(arms, sizes, sources), "test_evaluations": len(records),
            "extra_candidates": extra_candidates(records) + extra_candidates(sources),
            "wall_seconds": wall, "environments": environment_counts(records),
            "verdict": transfer_verdict(comparisons, sources, margin)}
