"""benchmarks/grid_edge.py: the edge count read from records, and the wide grid's comparison on digits."""

import json

import numpy as np
import pytest
from benchmark_scripts import load_benchmark


def _module():
    return load_benchmark("grid_edge")


def _record(folder, arm, size, scores):
    path = folder / arm / f"n{size}-s0.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"arm": arm, "validation_scores": scores, "size": size, "test_correct": "",
                                "n_test": 0}))


def test_count_edges_sorts_each_choice_by_kind_and_size_and_skips_variants_and_damage(tmp_path, capsys):
    _record(tmp_path, "fixed-random-d1", 100, [0.9, 0.8, 0.7, 0.6])       # first (the lowest C)
    _record(tmp_path, "fixed-gabor-d1", 300, [0.7, 0.7, 0.7, 0.7])        # a tie counts as the first
    _record(tmp_path, "learned-d2", 3000, [0.1, 0.9, 0.2, 0.3])           # inner
    _record(tmp_path, "raw", 60000, [0.1, 0.2, 0.3, 0.4])                 # last
    _record(tmp_path, "mixing-random-d1", 100, [0.9, 0.1, 0.1, 0.1])      # a variant: left out
    (tmp_path / "learned-d2" / "n100-s0.json").write_text("{not json")    # damaged: skipped
    _module().count_edges(tmp_path)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == ["| fixed d1 | up to 1,000 | 2 | 0 | 0 |", "| learned d2 | 3,000-10,000 | 0 | 1 | 0 |",
                        "| raw | full set | 0 | 0 | 1 |"]


def test_the_study_values_inside_the_wide_grid_give_the_study_choice(capsys):
    # On digits the wide grid's best of the study's values must be what the study's own protocol chooses.
    from sklearn.datasets import load_digits

    from skconvfeat.study._curves import CurveProtocol, curve_arms, fit_arm

    module = _module()
    digits = load_digits()
    X, y = digits.images[:300], digits.target[:300]
    arm = next(a for a in curve_arms((1,)) if a.name == "fixed-random-d1")
    study = fit_arm(arm, X, y, CurveProtocol(), 0)[1]["validation_scores"]
    wide = fit_arm(arm, X, y, module._wide_protocol(module.WIDE_C), 0)[1]["validation_scores"]
    inside = [wide[module.WIDE_C.index(c)] for c in CurveProtocol().logistic_C]
    assert inside == pytest.approx(study)
    assert len(wide) == len(module.WIDE_C) and np.max(wide) >= np.max(study)


def test_a_plateau_rule_budget_reaches_the_network_and_its_note_says_where_it_stopped():
    # The options a plateau-rule run was made with must be the protocol the network trains under: a budget
    # of 300 steps (40 epochs' worth at most on 240 images) stops a rate of 1e-5 still improving.
    pytest.importorskip("torch")
    from sklearn.datasets import load_digits

    from skconvfeat.study._curves import curve_arms, fit_arm

    module = _module()
    digits = load_digits()
    X, y = digits.images[:1000], digits.target[:1000]
    protocol = module._wide_protocol((1e-5, 1e-3), "learning_rates", min_improvement=0.002,
                                     min_budget_steps=300, min_budget_epochs=1)
    assert (protocol.min_improvement, protocol.min_budget_steps, protocol.learning_rates) == (0.002, 300, (1e-5, 1e-3))
    arm = next(a for a in curve_arms((1,)) if a.name == "learned-d1")
    record = fit_arm(arm, X, y, protocol, 0)[1]
    assert record["budget_steps"] == 300 and record["steps"] > 0  # the last check may pass the budget by part of one
    note = module._network_note(record)
    assert note.startswith(f"; best check at {record['steps']:,} of 300 steps, ")
    assert note.endswith("converged" if record["converged"] else "not converged (budget reached)")
    assert module._network_note({"setting": {"C": 1.0}}) == ""


@pytest.mark.parametrize("option, value, says", [("--budget-steps", "0", "min_budget_steps"),
                                                 ("--min-improvement", "-1", "min_improvement")])
def test_a_bad_stop_rule_or_budget_is_refused_before_any_data_is_read(capsys, option, value, says):
    module = _module()
    with pytest.raises(SystemExit):
        module.main(["--dataset", "mnist", "--data-home", "no-such-folder", "--grid", "0.01", option, value])
    assert says in capsys.readouterr().err


def test_bad_grid_values_and_unknown_arms_are_refused_by_name(capsys, monkeypatch):
    module = _module()
    with pytest.raises(SystemExit):
        module.main(["--dataset", "mnist", "--data-home", "x", "--grid", "0.1,abc"])
    assert "argument --grid: expected comma-separated numbers, got '0.1,abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--dataset", "mnist", "--data-home", "x", "--grid", "0,0.1"])
    assert "argument --grid: expected positive values, got '0,0.1'" in capsys.readouterr().err
    arms = module.curve_arms((1,))
    monkeypatch.setattr(module, "_curve_task", lambda args: (None, None, lambda seed: arms, None))
    with pytest.raises(SystemExit):
        module.main(["--dataset", "mnist", "--data-home", "x", "--arms", "fixed-kmens-d1"])
    assert "argument --arms: unknown arms ['fixed-kmens-d1']" in capsys.readouterr().err
