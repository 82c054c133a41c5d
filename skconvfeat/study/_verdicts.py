"""From scores to answers: the best fixed arm, the comparisons with the reference, and the three claims."""

import numpy as np

from . import _format as fmt
from ._design import suffix
from ._stats import claim_verdict, corrected_paired_ttest, judge

__all__ = ["BASELINE_FLOORS", "baseline", "best_fixed_arm", "comparisons", "fixed_candidates", "verdicts"]

# Accuracy a plain PyTorch CNN of the reference's size reaches on the full
# training set (issue 10: two conv layers, 15 epochs, about 75% on the
# CIFAR-10 JPEG copy). A learned reference below it is too weak a baseline
# for its verdicts to count as fair.
BASELINE_FLOORS = {"cifar10": 0.74, "cifar10-jpeg": 0.74}


def fixed_candidates(arms):
    """The arms the best fixed arm is chosen from: the fixed arms of the deepest network, or every arm of
    that depth (e.g. only the raw pixels) when none is fixed.

    The deepest network, because that is the one the learned reference has
    (a deeper fixed arm against a shallower learned one is no fair match).
    ``arms`` are ``Arm`` objects or summarised arm dicts.
    """
    def get(arm, key, default=None):
        return arm.get(key, default) if isinstance(arm, dict) else getattr(arm, key, default)

    depth = max((get(a, "depth", 1) for a in arms), default=1)
    deepest = [a for a in arms if get(a, "depth", 1) == depth]
    return [a for a in deepest if get(a, "kind") == "fixed"] or deepest


def best_fixed_arm(arm_results):
    """The one "best fixed arm" of a study: the candidate (see :func:`fixed_candidates`) with the highest
    ``validation_accuracy``, measured on images held out of the training images, never on the test images.

    The confusion matrix, verdict (b) and the report all use this arm. ``None`` when there are no arms.
    Ties go to the arm listed first.
    """
    return max(fixed_candidates(arm_results), key=lambda a: a["validation_accuracy"], default=None)


def comparisons(arm_results, reference, evaluation, alpha):
    """Every arm against ``reference``, one Holm family."""
    ref = next(a for a in arm_results if a["name"] == reference)
    tests = [evaluation.compare(arm, ref) for arm in arm_results if arm["name"] != reference]
    return judge(tests, alpha=alpha)


def baseline(results, reference):
    """Whether the learned reference reached the accuracy a plain CNN reaches here (None: no floor known)."""
    floor = BASELINE_FLOORS.get(results["dataset"])
    ref = next((a for a in results["arms"] if a["name"] == reference and a["kind"] == "learned"), None)
    if floor is None or ref is None:
        return None
    return {"arm": ref["name"], "label": ref["label"], "accuracy": ref["mean"], "floor": floor,
            "reached": bool(ref["mean"] >= floor)}


def verdicts(results, evaluation, transfer, alpha, small_sizes):
    """The three answers; every test they cite, the transfer experiment's included, is one Holm family.

    ``transfer``: the results of :func:`~skconvfeat.study.run_transfer`, or
    None; claim (c) is judged on its ``small_sizes`` smallest sizes.
    """
    transfer = transfer if transfer and not transfer.get("skipped") else None
    cited = _cited_tests(results, evaluation, transfer, results["margin"], small_sizes)
    tests = dict(zip(cited, judge(list(cited.values()), alpha=alpha)))
    arms = {a["name"]: a for a in results["arms"]}
    learned = _learned_reference(results)
    return [
        _verdict_random(arms, learned, tests),
        _verdict_fixed(results, arms, learned, tests),
        _verdict_transfer(transfer, tests, small_sizes),
    ]


def _untestable(claim, missing):
    return {"claim": claim, "verdict": "inconclusive", "sentence": f"Not tested: {missing}.", "tests": []}


def _per_seed(transfer, name, small_sizes, key="scores"):
    """One number per seed: the mean over the smallest ``small_sizes`` training sizes."""
    return np.mean(np.asarray(transfer["arms"][name][key])[:small_sizes], axis=0)


def _learned_reference(results):
    """The learned arm the answers judge against (the deepest network's), or None."""
    arms = {a["name"]: a for a in results["arms"]}
    reference = arms.get(results["reference"])
    return reference if reference is not None and reference["kind"] == "learned" else None


def _cited_tests(results, evaluation, transfer, margin, small_sizes):
    """Every paired test the answers cite, keyed by (arm, reference); not yet adjusted."""
    arms = {a["name"]: a for a in results["arms"]}
    pairs = [("random", "identity")]
    learned = _learned_reference(results)
    if learned is not None:
        frozen = "random_adam" + suffix(learned["depth"])
        pairs += [("random", learned["name"]), (learned["name"], frozen), (results["best_fixed"], learned["name"])]
    tests = {
        (a, b): evaluation.compare(arms[a], arms[b]) for a, b in pairs if a in arms and b in arms and a != b
    }
    if transfer is not None and transfer["train_sizes"]:
        for other in ("scratch", "random"):
            test = corrected_paired_ttest(_per_seed(transfer, "transfer", small_sizes),
                                          _per_seed(transfer, other, small_sizes), margin=margin)
            tests[("transfer", other)] = {"arm": "transfer", "reference": other, **test}
    return tests


def _verdict_random(arms, learned, tests):
    claim = "(a) Random kernels will work very poorly"
    if ("random", "identity") not in tests:
        return _untestable(claim, "needs the 'random' and 'identity' (raw pixels) arms")
    vs_raw = tests[("random", "identity")]
    sentence = (
        f"Random fixed kernels reached {fmt.accuracy(arms['random'])}. 'Very poorly' is judged against the same "
        f"head on the raw pixels ({fmt.accuracy(arms['identity'])}), i.e. no convolution at all: the difference "
        f"is {fmt.difference(vs_raw)}"
    )
    cited = [vs_raw]
    if learned is not None and ("random", learned["name"]) in tests:
        cited.append(tests[("random", learned["name"])])
        sentence += f"; against {learned['label']} ({fmt.percent(learned['mean'])}) it is {fmt.difference(cited[-1])}"
        if fmt.unjudged_networks(cited[-1], arms):
            sentence += f", {fmt.judged_outcome(cited[-1], arms)}"
    return {"claim": claim, "verdict": claim_verdict(vs_raw["outcome"], "below"), "sentence": sentence + ".",
            "tests": cited}


def _verdict_fixed(results, arms, learned, tests):
    claim = "(b) Fixed kernels will learn, but certainly worse than learned kernels"
    best = arms.get(results["best_fixed"])
    if learned is None or best is None or (best["name"], learned["name"]) not in tests:
        return _untestable(claim, "needs a learned arm and at least one fixed bank")
    res = tests[(best["name"], learned["name"])]
    sentence = (
        f"The best fixed arm ({best['label']}) reached {fmt.accuracy(best)} (chance: "
        f"{fmt.percent(1 / results['n_classes'])}), against {fmt.accuracy(learned)} for {learned['label']}: a "
        f"difference of {fmt.difference(res)}. The best fixed arm was chosen on images held out of the training "
        "images, not on these scores."
    )
    cited = [res]
    frozen = (learned["name"], "random_adam" + suffix(learned["depth"]))
    if frozen in tests:
        cited.append(tests[frozen])
        sentence += (
            " Same network, same random start and same optimiser, training the kernels instead of "
            f"freezing them changes accuracy by {fmt.difference(cited[-1])}."
        )
    outcome = claim_verdict(res["outcome"], "below")
    unconverged = [arm for arm in (learned, best) if fmt.stopped_early(arm)]
    if unconverged:
        outcome = "inconclusive"
        names = " and ".join(f"{arm['label']} ({fmt.stopped_early(arm)} of {len(arm['converged'])} fits)"
                             for arm in unconverged)
        sentence = (f"Not judged: the learned baseline had not converged: {names} stopped at max_epochs still "
                    f"improving, so the gap measures the training budget as much as the kernels. {sentence}")
    floor = results["baseline"]
    if floor is not None and not floor["reached"]:
        outcome = "inconclusive"
        sentence = (
            f"Not judged: the learned baseline reached {fmt.percent(floor['accuracy'])}, below the "
            f"{fmt.percent(floor['floor'])} a plain two-layer CNN reaches on {results['dataset']}, so this "
            f"comparison is not a fair one. {sentence}"
        )
    return {"claim": claim, "verdict": outcome, "sentence": sentence, "tests": cited}


def _verdict_transfer(transfer, tests, small_sizes):
    claim = "(c) Kernels pretrained on another task and held fixed are highly effective and need less data and time"
    if ("transfer", "scratch") not in tests:
        return _untestable(claim, "the transfer experiment did not run")
    vs_scratch, vs_random = tests[("transfer", "scratch")], tests[("transfer", "random")]
    sizes, arms = transfer["train_sizes"], transfer["arms"]
    speedup = (np.mean(_per_seed(transfer, "scratch", small_sizes, "fit_time"))
               / np.mean(_per_seed(transfer, "transfer", small_sizes, "fit_time")))
    curve = ", ".join(
        f"{n}: {fmt.percent(arms['transfer']['mean'][i])} vs {fmt.percent(arms['scratch']['mean'][i])}"
        for i, n in enumerate(sizes)
    )
    sentence = (
        f"With {' and '.join(map(str, sizes[:small_sizes]))} training images of unseen classes, kernels learned "
        f"on classes {transfer['source_classes']} and then frozen differ from kernels learned from scratch by "
        f"{fmt.difference(vs_scratch)} and from random fixed kernels by {fmt.difference(vs_random)} (paired over "
        f"{transfer['n_seeds']} seeds, each with its own test fold); their head trains {speedup:.1f}x faster than "
        f"the whole network from scratch (pretraining took {np.mean(transfer['source_fit_time']):.1f} s once). "
        f"Accuracy by training size, transferred vs scratch: {curve}."
    )
    return {"claim": claim, "verdict": claim_verdict(vs_scratch["outcome"], "above"), "sentence": sentence,
            "tests": [vs_scratch, vs_random]}
