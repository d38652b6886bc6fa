import json
import os
import re

import numpy as np
import pytest
import torch

from conftest import golden_path
from meshconf import constants as C
from meshconf.classifier import data as D
from meshconf.classifier import load, load_file
from meshconf.classifier import metrics as M
from meshconf.classifier.models import Estimator, OriginalModels
from meshconf.classifier.training import train_meshconfnet, train_original
from meshconf.cli import main as cli_main
from meshconf.errors import MeshconfError
from meshconf.models.recipe import recipe_state_dict

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _synthetic_set(n=600, seed=0, name="syn"):
    rng = np.random.default_rng(seed)
    se = np.abs(rng.normal(0.06, 0.05, (n, 14)))
    se[rng.random(n) < 0.4, rng.integers(0, 14)] += 0.3
    ed = np.abs(se + rng.normal(0, 0.03, (n, 14)))
    conf = rng.uniform(0.2, 1.0, (n, 14))
    conf[rng.random((n, 14)) < 0.05] = 0
    return D.EDSet(name, ed, conf, se)


def test_leak_free_split_pairs_clean_and_occluded_and_purges_neighbours(tmp_path):
    clean, occluded, other = _synthetic_set(3000, 0, "x_train"), _synthetic_set(3000, 1, "x_occ_train"), \
        _synthetic_set(1000, 2, "y_train")
    prep = D.prepare([clean, occluded, other], seed=0, block=200, purge=20)
    rows = {n: (np.sort(prep.train.rows[prep.train.source == n]), np.sort(prep.val.rows[prep.val.source == n]))
            for n in ("x_train", "x_occ_train", "y_train")}
    # the clean and occluded copy of a frame are always on the same side
    np.testing.assert_array_equal(rows["x_train"][1], rows["x_occ_train"][1])
    np.testing.assert_array_equal(rows["x_train"][0], rows["x_occ_train"][0])
    for name, (train, val) in rows.items():
        assert len(np.intersect1d(train, val)) == 0
        gaps = np.abs(train[:, None] - val[None, :]).min(1)
        assert gaps.min() > 20, name  # no train frame within the purge gap of a validation frame
        n = 1000 if name == "y_train" else 3000
        assert sum(min(200, n - b * 200) for b in np.unique(val // 200)) == len(val)  # whole blocks only
    assert prep.counts["x_train"]["purged"] > 0 and prep.counts["x_train"]["split_shared_with"] == [
        "x_occ_train", "x_train"]
    D.save_prepared(prep, tmp_path)
    meta = json.loads((tmp_path / "prepared.json").read_text())
    assert meta["split"]["block"] == 200 and meta["split"]["purge"] == 20
    assert D.load_prepared(tmp_path).split["purge"] == 20


def test_labels_and_original_filter():
    se = np.array([[0.05] * 14, [0.05] * 13 + [0.2], [2.0] + [0.0] * 13])
    conf = np.ones((3, 14))
    conf[1, C.J14_NECK] = 0.05
    s = D.EDSet("t", np.zeros((3, 14)), conf, se)
    np.testing.assert_array_equal(s.label_m, [1, 0, 0])
    np.testing.assert_array_equal(s.label_wj, [0, 13, 0])
    np.testing.assert_array_equal(D.original_filter(s), [True, False, False])


def test_prepare_is_seeded_and_disjoint(tmp_path):
    sets = [_synthetic_set(500, 0, "a"), _synthetic_set(300, 1, "b")]
    p1, p2, p3 = D.prepare(sets, seed=3), D.prepare(sets, seed=3), D.prepare(sets, seed=4)
    np.testing.assert_array_equal(p1.train.rows, p2.train.rows)
    assert not np.array_equal(p1.train.rows, p3.train.rows)
    for name, n in (("a", 500), ("b", 300)):
        tr = p1.train.rows[p1.train.source == name]
        va = p1.val.rows[p1.val.source == name]
        assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == n
        assert len(va) == round(0.2 * n)
    blocks = D.prepare(sets, seed=3, block=50)
    va = np.sort(blocks.val.rows[blocks.val.source == "a"])
    assert all(r // 50 in set(va // 50) for r in va) and len(set(va // 50)) <= 3
    D.save_prepared(p1, tmp_path)
    back = D.load_prepared(tmp_path)
    np.testing.assert_array_equal(back.val.ed, p1.val.ed)
    np.testing.assert_allclose(back.ed_var, p1.ed_var)
    csv = (tmp_path / "all_train.csv").read_text().splitlines()
    assert csv[0].startswith("sp_op_0,") and csv[0].endswith("label_m,label_wj,label_c")
    assert len(csv) - 1 == len(p1.original("train"))


def test_original_models_match_demo_golden(golden):
    """The paper's MLPs, with the seed-0 recipe weights, reproduce the demo's classifier outputs."""
    g = golden("ed_demo_golden.npz")
    manifest = json.loads(golden_path("manifest_meshconfidence_classifiers.json").read_text())["keys"]
    net = OriginalModels()
    for prefix, module in (("classifier_mesh.", net.mc), ("classifier_wj.", net.wj)):
        shapes = {k[len(prefix):]: v["shape"] for k, v in manifest.items() if k.startswith(prefix)}
        assert {k: list(v.shape) for k, v in module.state_dict().items()} == shapes
        module.load_state_dict(recipe_state_dict(shapes, 0, seed_prefix=prefix))
    est = Estimator(net, "original")
    z = net.standardize(torch.from_numpy(g["ed_raw"])[None])
    np.testing.assert_allclose(z[0].numpy(), g["ed_standardized"], atol=1e-4)
    pred = est.predict(g["ed_raw"])
    np.testing.assert_allclose(pred.p_accurate[0], g["classifier_mesh_output"], atol=1e-5)
    np.testing.assert_allclose(pred.worst_joint_prob[0], g["classifier_wj_softmax"], atol=1e-5)
    assert pred.joint_error is None


@pytest.mark.slow
def test_training_is_reproducible_and_learns():
    prep = D.prepare([_synthetic_set(800, 0, "a")], seed=0)
    e1, h1 = train_meshconfnet(prep, seed=1, members=2, epochs=40, batch=32, progress=False)
    e2, _ = train_meshconfnet(prep, seed=1, members=2, epochs=40, batch=32, progress=False)
    test = _synthetic_set(400, 9, "t")
    p1, p2 = e1.predict(test.ed, test.conf), e2.predict(test.ed, test.conf)
    np.testing.assert_allclose(p1.p_accurate, p2.p_accurate, atol=1e-6)
    assert len(h1) == 2 and len(h1[0].curves["val_loss"]) == 40
    m = M.evaluate(p1, test)
    assert m["mc_auroc"] > 0.6 and m["joint_pearson_r_mean"] > 0.4, m  # chance: 0.5 and 0
    o, hist = train_original(prep, seed=0, epochs_mc=2, epochs_wj=2, progress=False)
    assert [len(h.curves["train_acc"]) for h in hist] == [2, 2]
    assert o.predict(test.ed).worst_joint_prob.shape == (400, 14)


def test_save_load_roundtrip_is_safe(tmp_path):
    prep = D.prepare([_synthetic_set(300, 0, "a")], seed=0)
    est, _ = train_meshconfnet(prep, seed=0, members=2, epochs=1, progress=False)
    path = tmp_path / "m.safetensors"
    est.save(path)
    back = load_file(path)
    s = _synthetic_set(50, 5)
    np.testing.assert_allclose(back.predict(s.ed, s.conf).joint_error, est.predict(s.ed, s.conf).joint_error)
    assert back.metadata["members"] == 2
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    for bad in (tmp_path / "bad.safetensors", tmp_path / "none.safetensors"):
        with pytest.raises(MeshconfError):
            load_file(bad)
    with pytest.raises(MeshconfError):
        load("nonsense")


@pytest.mark.slow
def test_stacked_trees_match_sklearn_and_roundtrip(tmp_path):
    """The shipped trees are arrays evaluated by torch: they must give scikit-learn's own probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from meshconf.classifier.training import stack_with_trees
    from meshconf.classifier.trees import GB_PARAMS, JointTrees, tree_features

    train = _synthetic_set(600, 0, "a")
    ed32, conf32 = (torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (train.ed, train.conf))
    x = tree_features(ed32, conf32).numpy()
    models = [HistGradientBoostingClassifier(**{**GB_PARAMS, "max_iter": 20}, random_state=j)
              .fit(x, train.se[:, j] > 0.1) for j in range(14)]
    trees = JointTrees.from_sklearn(models)
    test = _synthetic_set(200, 3, "t")
    t32 = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (test.ed, test.conf)]
    expected = np.stack([m.predict_proba(tree_features(*t32).numpy())[:, 1] for m in models], 1)
    np.testing.assert_allclose(trees(*t32).numpy(), expected, atol=1e-12)

    prep = D.prepare([_synthetic_set(400, 0, "a")], seed=0)
    network, _ = train_meshconfnet(prep, seed=0, members=2, epochs=2, progress=False)
    stacked = stack_with_trees(network, prep, seed=0, progress=False)
    path = tmp_path / "stack.safetensors"
    stacked.save(path)
    back = load_file(path)
    assert back.kind == "meshconfstack" and back.predicts_joint_error
    a, b = stacked.predict(test.ed, test.conf), back.predict(test.ed, test.conf)
    np.testing.assert_allclose(a.p_accurate, b.p_accurate, atol=1e-7)
    np.testing.assert_allclose(a.joint_error, b.joint_error, atol=1e-7)
    assert len(back.metadata["stack_coefficients"]) == 3


def test_metrics_by_hand():
    from meshconf.classifier.models import Prediction

    se = np.full((4, 14), 0.05)
    se[2, 3] = 0.5
    se[3, 7] = 0.5
    s = D.EDSet("h", np.zeros((4, 14)), np.ones((4, 14)), se)
    wj = np.full((4, 14), 0.01)
    wj[2, 3] = 0.9
    wj[3, 1] = 0.9
    wj[3, 7] = 0.5
    pred = Prediction(np.array([0.9, 0.4, 0.2, 0.6]), wj, se.copy())
    m = M.evaluate(pred, s)
    assert m["mc_accuracy"] == 0.5  # rows 0 and 2 right, 1 and 3 wrong
    assert m["mc_auroc"] == 0.75
    assert m["wj_top1_inaccurate"] == 0.5 and m["wj_top3_inaccurate"] == 1.0
    ece, *_ = M.expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 0]))
    assert ece == pytest.approx(0.4)


def test_shipped_estimators_load_and_have_metadata():
    for name in ("default", "original"):
        est = load(name)
        assert est.metadata["seed"] == 0 and "3dpw_train" in est.metadata["training_data"]
        pred = est.predict(np.full((3, 14), 0.05), np.ones((3, 14)))
        assert pred.p_accurate.shape == (3,) and pred.worst_joint_prob.shape == (3, 14)
        np.testing.assert_allclose(pred.worst_joint_prob.sum(1), 1, atol=1e-5)
    assert load("default").predict(np.full((1, 14), 0.05), np.ones((1, 14))).joint_error.shape == (1, 14)
    with pytest.raises(MeshconfError):
        load("default").predict(np.zeros((2, 13)), np.ones((2, 13)))


def _readme_table():
    text = (REPO / "docs" / "estimators.md").read_text()
    block = text.split("<!-- classifier-results -->")[1]
    rows = {}
    for line in block.splitlines():
        m = re.match(r"\|\s*(default|v1|original)\s*\|\s*(\S+)\s*\|(.*)\|\s*$", line)
        if m:
            cells = [v.strip().rstrip("%") for v in m.group(3).split("|")]
            rows[(m.group(1), m.group(2))] = [float(c) if re.fullmatch(r"[0-9.]+", c) else None for c in cells]
    return rows


@pytest.mark.slow
def test_evaluate_reproduces_readme_numbers(shared, tmp_path, capsys):
    data = shared / "data" / "meshconfidence" / "sp_op" / "3dpw"
    assert cli_main(["evaluate", "--data", str(data), "--out", str(tmp_path), "--train-sets", "--model", "default",
                     "v1", "original", "--no-progress"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["estimators"]
    table = _readme_table()
    assert len(table) == 6
    keys = ("mc_accuracy", "mc_auroc", "wj_top1", "wj_top3", "joint_pearson_r_mean", "bound_coverage",
            "bound_coverage_worst_joint")
    for (model, set_name), values in table.items():
        got = results[model][set_name]
        for key, value in zip(keys, values):
            if value is None:
                assert key not in got
                continue
            scale = 100 if key in ("mc_accuracy", "wj_top1", "wj_top3", "bound_coverage",
                                   "bound_coverage_worst_joint") else 1
            assert round(got[key] * scale, 1 if scale == 100 else 3) == pytest.approx(value), (model, set_name, key)
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
    assert "estimator: default" in capsys.readouterr().out


def test_conformal_bounds_and_operating_points(tmp_path):
    from meshconf.classifier import metrics as M
    from meshconf.classifier.models import load_file

    every = _synthetic_set(4500, 0, "a")
    prep = D.prepare([every.subset(np.arange(1500))], seed=0, block=100, purge=5)
    network, _ = train_meshconfnet(prep, seed=0, members=1, epochs=2, progress=False)
    cal = prep.sane("val")
    network.calibrate(cal.ed, cal.conf, cal.se, coverage=0.9)
    assert network.bound_coverage == 0.9 and len(network.metadata["bounds"]["log_quantile"]) == 14
    pred = network.predict(cal.ed, cal.conf)
    assert pred.joint_error_bound.shape == (len(cal), 14) and (pred.joint_error_bound >= pred.joint_error).mean() > 0.5
    # split-conformal: at least the target coverage on the calibration rows themselves, per joint
    covered = (cal.se <= pred.joint_error_bound + 1e-12).mean(0)
    assert (covered >= 0.9).all(), covered
    fresh = every.subset(np.arange(1500, 4500))  # new rows from the same distribution: coverage near the target
    cover = M.bound_report(network.predict(fresh.ed, fresh.conf).joint_error_bound, fresh.se)["coverage"]
    assert 0.85 < cover < 0.96, cover
    for precision, threshold in network.operating_points:
        accepted = pred.p_accurate >= threshold
        assert cal.label_m[accepted].mean() >= precision - 1e-9
    if network.operating_points:
        p0, t0 = network.operating_points[0]
        assert network.threshold_for(p0) == t0
    with pytest.raises(MeshconfError, match="no operating point"):
        network.threshold_for(0.9999)
    network.save(tmp_path / "e.safetensors")
    back = load_file(tmp_path / "e.safetensors")
    np.testing.assert_allclose(back.predict(cal.ed, cal.conf).joint_error_bound, pred.joint_error_bound, atol=1e-6)
    assert back.operating_points == network.operating_points
    result = M.evaluate(pred, cal, network.operating_points)
    assert 0 <= result["aurc"] <= 1 and result["bounds"]["coverage"] >= 0.9


def test_operating_points_by_hand():
    from meshconf.classifier import calibration as M

    p = np.linspace(1, 0, 100)
    label = (np.arange(100) < 60).astype(int)  # the 60 most confident are accurate
    label[[5, 10]] = 0
    points = dict(M.operating_points(p, label, (0.9, 0.95)))
    assert points[0.95] == pytest.approx(p[60]) and points[0.9] == pytest.approx(p[63])  # 58/61, 58/64
    _, risk, aurc = M.risk_coverage(p, label)
    assert risk[0] == 0 and aurc > 0


@pytest.mark.slow
def test_train_job_reproduces_bit_for_bit_in_fresh_processes(shared, tmp_path):
    """The prepare + train commands of docs/estimators.md, on a subset of 3DPW train, twice in fresh processes: the same weights
    bit for bit, and the numerics that decide them (MKL's reproducible mode, the thread count) recorded."""
    import json
    import subprocess
    import sys

    from safetensors.numpy import load_file

    source = shared / "data" / "meshconfidence" / "sp_op" / "3dpw"
    subset = tmp_path / "data"
    subset.mkdir()
    for path in source.glob("*_train_*.npy"):
        np.save(subset / path.name, np.load(path)[:2000])
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "OMP_NUM_THREADS")}

    def job(*argv):
        done = subprocess.run([sys.executable, "-m", "meshconf", *argv], env=env,
                              capture_output=True, text=True)  # no deadline: training's pace depends on the load
        assert done.returncode == 0, done.stderr[-2000:]

    job("prepare", "--data", str(subset), "--out", str(tmp_path / "prep"), "--split", "frames")
    job("prepare", "--data", str(subset), "--out", str(tmp_path / "prep_blocks"))
    for run in ("a", "b"):
        job("train", "--prepared", str(tmp_path / "prep"), "--out", str(tmp_path / run), "--model", "original",
            "--no-progress")
        job("train", "--prepared", str(tmp_path / "prep_blocks"), "--out", str(tmp_path / run), "--model",
            "default", "--no-progress")  # v2: network, trees (scikit-learn's OpenMP) and the out-of-fold fits
    for weights in ("original.safetensors", "meshconf_v2.safetensors"):
        a, b = (load_file(str(tmp_path / run / weights)) for run in ("a", "b"))
        assert set(a) == set(b)
        for key in a:
            assert np.array_equal(a[key], b[key]), (weights, key)
    metrics = json.loads((tmp_path / "a" / "metrics_original.json").read_text())
    assert metrics["metadata"]["numerics"]["mkl_cbwr"] == "COMPATIBLE,STRICT"
    assert metrics["metadata"]["numerics"]["threads"] == 2
    assert metrics["weights_sha256"] == json.loads((tmp_path / "b" / "metrics_original.json").read_text())[
        "weights_sha256"]


def test_forest_gives_sklearns_scores_with_shallow_leaves():
    """v2's perfect-tree arrays give scikit-learn's own raw scores, including trees whose leaves stop above the
    last level (padded with +inf thresholds) and values that sit exactly on a threshold."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from meshconf.classifier.forest import Forest, float32_floor, forest_features, monotone_constraints

    s = _synthetic_set(2000, 4)
    t32 = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (s.ed, s.conf)]
    x = forest_features(*t32)
    x64 = x.double().numpy()
    regs = [HistGradientBoostingRegressor(max_depth=5, max_leaf_nodes=None, max_iter=15, early_stopping=False,
                                          min_samples_leaf=300, monotonic_cst=monotone_constraints(j),
                                          random_state=j).fit(x64, s.se[:, j]) for j in range(3)]
    assert any(p.nodes["depth"][p.nodes["is_leaf"].astype(bool)].min() < 5 for (p,) in regs[0]._predictors)
    forest = Forest.from_sklearn(regs, 5)
    assert forest.shape == (3, 15, 5)
    np.testing.assert_allclose(forest(x).numpy(), np.stack([m.predict(x64) for m in regs], 1), rtol=0, atol=1e-12)
    clf = HistGradientBoostingClassifier(max_depth=3, max_leaf_nodes=None, max_iter=10, early_stopping=False,
                                         random_state=0).fit(x64, s.label_m)
    on_threshold = x.clone()
    node = clf._predictors[0][0].nodes[0]
    on_threshold[:, node["feature_idx"]] = float(float32_floor(np.array([node["num_threshold"]]))[0])
    for rows in (x, on_threshold):
        np.testing.assert_allclose(Forest.from_sklearn([clf], 3)(rows).numpy()[:, 0],
                                   clf.decision_function(rows.double().numpy()), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="deeper"):
        Forest.from_sklearn([clf], 2)
    low = float32_floor(np.array([0.1]))[0]
    assert float(low) <= 0.1 < float(np.nextafter(low, np.float32(1)))


def test_block_folds_pair_sources_keep_validation_and_purge():
    clean, occluded = _synthetic_set(3000, 0, "x_train"), _synthetic_set(3000, 1, "x_occ_train")
    prep = D.prepare([clean, occluded], seed=3, block=200, purge=20, folds=4)
    pool, fold = prep.pool, prep.pool_fold
    assert len(pool) == 6000 and set(np.unique(fold)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(fold[:3000], fold[3000:])  # the clean and occluded copy: one fold
    for b in range(0, 3000, 200):
        assert len(np.unique(fold[b:b + 200])) == 1  # whole blocks
    val_rows = np.sort(prep.val.rows[prep.val.source == "x_train"])
    np.testing.assert_array_equal(np.flatnonzero(fold[:3000] == 0), val_rows)  # fold 0 = the validation blocks
    for k in range(4):
        fit, held = D.cv_split(pool, fold, k, 20)
        assert (fold[held] == k).all() and (fold[fit] != k).all() and len(np.intersect1d(fit, held)) == 0
        gaps = np.abs(pool.rows[fit][:, None] - pool.rows[held][None, :]).min(1)
        assert gaps.min() > 20
    # the train/validation split itself is what it was before folds existed (the original recipe's rows)
    again = D.prepare([clean, occluded], seed=3, block=200, purge=20, folds=2)
    np.testing.assert_array_equal(again.train.rows, prep.train.rows)
    np.testing.assert_array_equal(again.val.rows, prep.val.rows)


@pytest.mark.slow
def test_v2_trains_out_of_fold_and_roundtrips(tmp_path):
    from meshconf.classifier.v2 import train_v2

    def easier(s):  # errors scaled down so that a quarter of the meshes are accurate: operating points exist
        return D.EDSet(s.name, s.ed * 0.6, s.conf, s.se * 0.6)

    prep = D.prepare([easier(_synthetic_set(1500, 0, "a_train")), easier(_synthetic_set(1500, 1, "a_occ_train"))],
                     seed=0, block=100, purge=5, folds=3)
    est, curves, oof = train_v2(prep, seed=0, progress=False)
    assert est.operating_points and set(est.metadata["cv_metrics_by_source"]) == {"a_train", "a_occ_train"}
    for source, metrics in est.metadata["cv_metrics_by_source"].items():  # calibrated to hold in each source
        assert metrics["bound_coverage"] >= 0.9, source
        for target, _ in est.operating_points:
            assert metrics[f"precision_at_{target:g}"] >= target - 1e-9, (source, target)
    assert est.kind == "meshconfv2" and est.metadata["folds"] == 3 and len(curves) == 5
    assert curves[0].curves["val_loss"]  # the first fold's networks are scored on their held-out fold
    assert 0 <= est.metadata["blend_tree_weight"] <= 1 and len(est.metadata["stack_coefficients"]) == 4
    assert oof["n"] == len(prep.pool) and oof["mc_auroc"] > 0.6 and oof["joint_pearson_r_mean"] > 0.4, oof
    # bounds were calibrated on those out-of-fold rows: their coverage there is at least the target
    assert oof["bounds"]["coverage"] >= 0.9 and est.bound_coverage == 0.9
    for point in oof["operating_points"]:
        assert point["precision"] >= point["target_precision"] - 1e-9
    path = tmp_path / "v2.safetensors"
    est.save(path)
    back = load_file(path)
    test = _synthetic_set(300, 9, "t")
    a, b = est.predict(test.ed, test.conf), back.predict(test.ed, test.conf)
    for field in ("p_accurate", "worst_joint_prob", "joint_error", "joint_error_bound"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=0, atol=1e-12)
    assert back.operating_points == est.operating_points and back.threshold_for(0.8) == est.threshold_for(0.8)
    np.testing.assert_allclose(a.worst_joint_prob.sum(1), 1, atol=1e-9)
    assert (a.joint_error >= 0).all() and (a.joint_error_bound >= a.joint_error).all()


@pytest.mark.slow
def test_signals_flow_from_arrays_through_prepare_train_and_evaluate(tmp_path):
    """`<set>_signals.npy` beside the arrays: prepare keeps them, v2 trains its trees on them, predict needs them
    (a one-line error without), and evaluate passes them."""
    from meshconf.sp_op.signals import NUM_SIGNALS

    data = tmp_path / "data"
    data.mkdir()
    for name, seed in (("s_train", 0), ("s_occ_train", 1), ("s_test", 2)):
        s = _synthetic_set(1200, seed, name)
        rng = np.random.default_rng(seed)
        signals = rng.normal(0, 1, (1200, NUM_SIGNALS))
        signals[:, 0] = s.se.max(1) + rng.normal(0, 0.01, 1200)  # one signal that knows the answer
        for key, arr in (("sp_op", s.ed), ("sp_gt", s.se), ("conf", s.conf), ("signals", signals)):
            np.save(data / f"{name}_{key}.npy", arr)
    assert cli_main(["prepare", "--data", str(data), "--sets", "s_train", "s_occ_train", "--out",
                     str(tmp_path / "prep"), "--block", "100", "--purge", "5", "--folds", "2"]) == 0
    prep = D.load_prepared(tmp_path / "prep")
    assert prep.pool.signals.shape == (2400, NUM_SIGNALS) and prep.train.signals is not None
    import subprocess
    import sys

    # in a fresh process: training switches MKL to its reproducible mode for the rest of the process it runs in
    done = subprocess.run([sys.executable, "-m", "meshconf", "train", "--prepared", str(tmp_path / "prep"), "--out",
                           str(tmp_path / "w"), "--model", "default", "--no-progress"], capture_output=True, text=True)
    # no deadline above: the same training took 5 minutes alone and 47 beside other work
    assert done.returncode == 0, done.stderr[-2000:]
    est = load_file(tmp_path / "w" / "meshconf_v2.safetensors")
    assert est.needs_signals and est.metadata["signals"][0] == "spin_step_pose_1"
    test = D.load_set(data, "s_test")
    with pytest.raises(MeshconfError, match="signals"):
        est.predict(test.ed, test.conf)
    pred = est.predict(test.ed, test.conf, signals=test.signals)
    assert M.evaluate(pred, test)["mc_auroc"] > 0.9  # the informative signal is used
    assert cli_main(["evaluate", "--data", str(data), "--sets", "s_test", "--model",
                     str(tmp_path / "w" / "meshconf_v2.safetensors"), "--train-sets", "--no-progress", "--out",
                     str(tmp_path / "ev")]) == 0
    np.save(data / "s_test_signals.npy", np.zeros((3, NUM_SIGNALS)))
    with pytest.raises(MeshconfError, match="shape"):
        D.load_set(data, "s_test")
