"""The learned pieces: GAT-LSTM edge classifier, GAT kernel model, the two end-to-end predictors, evaluation."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from inferperf.dataset.core import GraphDataset
from inferperf.ir.graph import Edge, ModelGraph, Node, TensorInfo
from inferperf.predict import Predictor, get_predictor, list_predictors
from inferperf.predict.fusion import FusionKernelPredictor, RuleKernelPredictor
from inferperf.predict.fusion.data import EdgeExample, edge_examples, graph_labels, kernel_examples, toy_dataset
from inferperf.predict.fusion.edge_classifier import EdgeClassifier
from inferperf.predict.fusion.evaluation import edge_metrics, family_folds, leave_family_out, share_holdout
from inferperf.predict.fusion.kernel_model import KernelModel

os.environ.setdefault("TMPDIR", "/tmp")

TINY_FUSION = dict(edge_hidden=32, edge_lstm_hidden=32, edge_epochs=12, edge_batch_size=4, kernel_hidden=32,
                   kernel_layers=2, kernel_epochs=15, kernel_batch_size=64, kernel_lr=3e-3, threads=1)


# ---------------------------------------------------------------------------------------------- synthetic rule
_OPS = ("Conv", "Relu", "Add", "MatMul", "Sigmoid", "Transpose")


def _random_graph(rng: random.Random, k: int) -> tuple[ModelGraph, np.ndarray]:
    """A random DAG whose edges are 'fused' by a made-up rule: Conv→Relu and MatMul→Add only."""
    n = rng.randint(8, 20)
    ops = [rng.choice(_OPS) for _ in range(n)]
    nodes, edges = [], []
    for i, op in enumerate(ops):
        shape = (1, 8, 4, 4)
        ins = [TensorInfo(f"t{j}", shape, "float32") for j in range(max(0, i - 2), i)] if i else [
            TensorInfo("x", shape, "float32")]
        out = [TensorInfo(f"t{i}", shape, "float32")]
        nodes.append(Node(i, f"g{k}n{i}", op, "", {}, ins, out, flops=128 * (i + 1)))
    for i in range(1, n):
        srcs = {i - 1} | ({rng.randrange(i)} if rng.random() < 0.3 else set())
        for s in sorted(srcs):
            edges.append(Edge(s, i, f"t{s}", 512))
    g = ModelGraph(f"g{k}", nodes, edges, [TensorInfo("x", (1, 8, 4, 4), "float32")],
                   [TensorInfo(f"t{n - 1}", (1, 8, 4, 4), "float32")], 17)
    label = np.array([1.0 if (ops[e.src], ops[e.dst]) in (("Conv", "Relu"), ("MatMul", "Add")) else 0.0
                      for e in edges], dtype=np.float32)
    return g, label


def test_edge_classifier_learns_a_synthetic_fusion_rule() -> None:
    rng = random.Random(3)
    device = {"id": "d", "features": {"cpu_logical_cpus": 2.0}}
    config = {"intra_op_threads": 1, "opt_level": "all"}

    def examples(count: int, start: int) -> list[EdgeExample]:
        out = []
        for k in range(start, start + count):
            g, y = _random_graph(rng, k)
            out.append(EdgeExample(g, config, device, y, np.ones(len(g.nodes), dtype=bool), "syn", g.name))
        return out

    train, test = examples(60, 0), examples(25, 1000)
    clf = EdgeClassifier(hidden=32, lstm_hidden=32, epochs=25, batch_size=8, lr=1e-2, seed=0).fit(train)
    probs = clf.predict_proba([(e.graph, e.config, e.device) for e in test])
    y = np.concatenate([e.edge_fused for e in test])
    pred = np.concatenate([p > 0.5 for p, _ in probs])
    m = edge_metrics(y, pred)
    majority = max(y.mean(), 1 - y.mean())  # the accuracy of always answering the majority class
    balanced = (m["tp"] / (m["tp"] + m["fn"]) + m["tn"] / (m["tn"] + m["fp"])) / 2
    assert m["accuracy"] > majority, m
    assert balanced > 0.75, m  # chance is 0.5
    assert all(len(pn) == len(e.graph.nodes) and (pn > 0.5).all() for (_, pn), e in zip(probs, test, strict=True))


def test_edge_metrics_and_folds() -> None:
    m = edge_metrics(np.array([1, 1, 0, 0, np.nan]), np.array([True, False, True, False, True]))
    assert (m["tp"], m["fp"], m["fn"], m["tn"], m["n"]) == (1, 1, 1, 1, 4)
    assert m["precision"] == m["recall"] == m["accuracy"] == 0.5
    folds = family_folds(list("abcdefg"), 3, seed=1)
    assert sorted(f for fold in folds for f in fold) == list("abcdefg") and len(folds) == 3
    assert family_folds(["a", "b"], None) == [["a"], ["b"]]


# ---------------------------------------------------------------------------------------------- real labels
@pytest.fixture(scope="module")
def toy() -> GraphDataset:
    return toy_dataset(per_family=2, seed=0, threads=(1, 2), runs=5)


def test_kernel_model_fit_predict_save_load(toy: GraphDataset, tmp_path: Path) -> None:
    ex = kernel_examples(toy)
    km = KernelModel(hidden=32, layers=2, epochs=10, batch_size=64, lr=3e-3, seed=0).fit(ex[::2], ex[1::2])
    items = [(e.graph, e.nodes, e.config, e.device) for e in ex[:20]]
    log_ms, probs = km.predict(items)
    assert log_ms.shape == (20,) and probs.shape == (20, len(km.types_))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert set(t for e in ex[::2] for t in [e.kernel_type]) <= set(km.types_)
    state = km.save(tmp_path)
    again = KernelModel.load(tmp_path, state)
    log2, probs2 = again.predict(items)
    assert np.allclose(log_ms, log2) and np.allclose(probs, probs2)
    top = km.top_types(probs, 3)
    assert all(len(t) == 3 and t[0][1] >= t[1][1] >= t[2][1] for t in top)


def test_rule_types_make_the_type_ranking_open_vocabulary() -> None:
    km = KernelModel()
    km.types_ = ["Conv", "Gemm", "LayerNorm", "Softmax"]
    probs = np.array([[0.1, 0.6, 0.2, 0.1], [0.7, 0.1, 0.15, 0.05], [0.4, 0.3, 0.2, 0.1]])
    plain = km.top_types(probs, 2)
    assert [[t for t, _ in row] for row in plain] == [["Gemm", "LayerNorm"], ["Conv", "LayerNorm"], ["Conv", "Gemm"]]
    ranked = km.top_types(probs, 2, ["Gemm", "LSTM", "Softmax"])
    assert ranked[0] == plain[0]  # the rules agree with the classifier: nothing moves
    assert ranked[1] == [("LSTM", None), ("Conv", 0.7)]  # a type no training kernel had leads, unscored
    assert ranked[2] == [("Conv", 0.4), ("Softmax", 0.1)]  # a known one outside the top k takes the last place


@pytest.mark.parametrize("name", ["fusion-kernel", "rule-kernel"])
def test_predictor_round_trip_and_breakdown(toy: GraphDataset, tmp_path: Path, name: str) -> None:
    assert name in {p["name"] for p in list_predictors()}
    hp = TINY_FUSION if name == "fusion-kernel" else {"n_estimators": 50}
    p = get_predictor(name, **hp).fit(toy)
    assert isinstance(p, FusionKernelPredictor if name == "fusion-kernel" else RuleKernelPredictor)
    s = toy[0]
    preds = p.predict([x.graph for x in toy[:4]], [x.config for x in toy[:4]], s.device)
    for pr in preds:
        assert pr.latency_ms is not None and pr.latency_ms > 0 and pr.memory_mb is None
        b = pr.breakdown
        total = sum(k.latency_ms for k in p.explain(toy[0].graph, toy[0].config, s.device).kernels)
        assert b["kernel_sum_ms"] + b["fixed_ms"] == pytest.approx(b["latency_ms"])
        assert b["latency_ms"] == pytest.approx(pr.latency_ms, rel=1e-9)
        assert sum(b["by_type"].values()) == pytest.approx(1.0)
        assert b["n_kernels"] >= 1 and total > 0
    fused = p.explain(s.graph, s.config, s.device)
    covered = sorted(n for k in fused.kernels for n in k.node_names)
    assert sorted(covered + fused.dropped) == sorted(n.name for n in s.graph.nodes)  # a partition
    art = p.save(tmp_path / name)
    q = Predictor.load(art)
    again = q.predict([x.graph for x in toy[:4]], [x.config for x in toy[:4]], s.device)
    assert [a.latency_ms for a in again] == pytest.approx([b.latency_ms for b in preds], rel=1e-6)
    assert again[0].breakdown["by_type"] == pytest.approx(preds[0].breakdown["by_type"])


def test_rule_gate_keeps_the_rules_verdict_unless_the_classifier_is_confident(toy: GraphDataset) -> None:
    """The partition keeps the runtime-pattern rules' verdict on every edge where the classifier's probability
    does not pass the gate against it; with no gate the classifier's threshold alone decides."""
    from inferperf.predict.fusion.rules import rule_partition

    s = next(x for x in toy if rule_partition(x.graph, "all", runtime_patterns=True).edge_fused.any()
             and not rule_partition(x.graph, "all", runtime_patterns=True).edge_fused.all())
    rules = rule_partition(s.graph, str(s.config.get("opt_level", "all")), runtime_patterns=True).edge_fused
    n_edges, n_nodes = len(s.graph.edges), len(s.graph.nodes)

    class _Fixed:  # the classifier's probabilities, set by the test
        p = 0.5

        def predict_proba(self, items: list) -> list:  # noqa: ANN001
            return [(np.full(n_edges, self.p), np.ones(n_nodes)) for _ in items]

    def fused(gate: float | None, p: float) -> np.ndarray:
        model = FusionKernelPredictor(rule_gate=gate)
        model.edge_model_, model.threshold_ = _Fixed(), 0.5
        model.edge_model_.p = p
        return model.partition([(s.graph, s.config, s.device)])[0][0]

    for p in (0.1, 0.5, 0.9):  # not confident enough to overrule the rules either way
        assert (fused(0.95, p) == rules).all()
    assert fused(0.95, 0.97).all() and not fused(0.95, 0.03).any()  # confident: the classifier decides
    assert fused(None, 0.5).all() and not fused(None, 0.49).any()  # no gate: the threshold


def test_kernel_predictors_need_profiles(toy: GraphDataset) -> None:
    from inferperf.dataset.core import Sample
    from inferperf.predict.base import PredictorError

    bare = GraphDataset([Sample(s.graph, s.family, s.config, s.device, s.labels) for s in toy])
    with pytest.raises(PredictorError, match="kernel profiles"):
        get_predictor("rule-kernel").fit(bare)


def test_evaluation_reports_fusion_kernels_and_shares(toy: GraphDataset) -> None:
    report = leave_family_out(toy, ["rule-kernel"], n_folds=2, hparams={"rule-kernel": {"n_estimators": 30}})
    summary = report["summary"]["rule-kernel"]
    assert 0.0 <= summary["fusion_pooled"]["accuracy"] <= 1.0
    assert summary["fusion_pooled"]["n"] == sum(int(np.isfinite(graph_labels(s).edge_fused).sum()) for s in toy)
    assert set(report["per_family"]["rule-kernel"]["e2e"]) == set(toy.families())
    assert summary["kernels_mean"]["type_top1"] == summary["kernels_mean"]["type_top5"]  # rules: one type
    # every toy family is measured at 1 and 2 threads: each family's error is also given per share
    e2e = report["per_family"]["rule-kernel"]["e2e"]
    assert all(set(r["by_share"]) == {"0.5", "1.0"} for r in e2e.values())
    assert set(summary["e2e_by_share"]) == {"0.5", "1.0"}
    assert summary["e2e_by_share"]["0.5"]["runs"] == sum(1 for s in toy if s.config["intra_op_threads"] == 1)
    shares = share_holdout(toy, "rule-kernel", hparams={"n_estimators": 30})
    assert shares["status"] == "ok" and set(shares["shares"]) == {"0.5", "1.0"}
    assert shares["extrapolation"] is True  # two shares: the held-out one is outside the training range
    held = shares["shares"]["1.0"]
    # every graph was measured at both shares: the share-blind and perfect-scaling references pair up with all
    assert held["paired_runs"] == held["n_test"] == sum(1 for s in toy if s.config["intra_op_threads"] == 2)
    one_thread = {s.graph_key: s.label("latency_ms") for s in toy if s.config["intra_op_threads"] == 1}
    two = [s for s in toy if s.config["intra_op_threads"] == 2]
    blind = np.mean([abs(one_thread[s.graph_key] / s.label("latency_ms") - 1) for s in two]) * 100
    assert held["share_blind_on_paired"] == pytest.approx(blind)
    # the nearest-share fallback (γ = 0.5, one share in training) against the networks' own extrapolation
    assert held["share_exponent"] == 0.5 and held["without_share_fallback"]["mape"] != pytest.approx(held["mape"])
    one = GraphDataset([s for s in toy if s.config["intra_op_threads"] == 1])
    assert share_holdout(one, "rule-kernel")["status"] == "skipped"


# ---------------------------------------------------------------------------------------------- aggregator
def test_aggregator_per_compute_share(toy: GraphDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs at 1 and 2 threads pay different per-kernel costs: each share measured often enough gets its own
    aggregator, a share never measured the pooled one, and both survive save / load."""
    from inferperf.predict.fusion.predictor import _KernelLevelPredictor

    monkeypatch.setattr(_KernelLevelPredictor, "MIN_SHARE_RUNS", 4)
    p = get_predictor("rule-kernel", n_estimators=20).fit(toy)
    assert set(p.overhead_by_share_) == {"0.5000", "1.0000"}
    s = toy[0]
    one, two = ({**s.config, "intra_op_threads": t} for t in (1, 2))
    assert p._overhead_for(one, s.device) is p.overhead_by_share_["0.5000"]
    assert p._overhead_for(two, s.device) is p.overhead_by_share_["1.0000"]
    unseen = {"id": s.device["id"], "features": {**s.device["features"], "cpu_logical_cpus": 8.0}}
    assert p._overhead_for(one, unseen) is p.overhead_  # share 1/8: never measured
    q = Predictor.load(p.save(tmp_path / "rk"))
    assert {k: m.state() for k, m in q.overhead_by_share_.items()} == {
        k: m.state() for k, m in p.overhead_by_share_.items()}
    # one share in training: no per-share table, the pooled aggregator everywhere
    single = get_predictor("rule-kernel", n_estimators=20).fit(
        GraphDataset([x for x in toy if x.config["intra_op_threads"] == 1]))
    assert single.overhead_by_share_ == {}


def test_overhead_model_learns_a_negative_per_kernel_cost_and_floors_kernels() -> None:
    """The profiler adds a few µs to every kernel: the unprofiled run is faster than the profiled kernel sum,
    so the per-kernel term must be allowed below zero (it was clamped at 0 and the scale absorbed it)."""
    from inferperf.predict.fusion.predictor import OverheadModel

    rng = np.random.default_rng(0)
    sums = rng.uniform(0.05, 20.0, 200)
    counts = rng.integers(2, 400, 200).astype(float)
    latency = 0.97 * sums - 0.0025 * counts + 0.004
    ok = latency > 0
    model = OverheadModel().fit(sums[ok], counts[ok], latency[ok])
    assert model.b == pytest.approx(-0.0025, rel=0.05)
    assert model.a == pytest.approx(0.97, rel=0.02)
    assert model.c == pytest.approx(0.004, rel=0.2)
    assert model.c >= 0 and model.a > 0
    # a kernel shorter than the profiler's cost keeps a tenth of its scaled time instead of going negative
    ms = model.kernel_ms(np.array([0.001, 1.0]))
    assert ms[0] == pytest.approx(OverheadModel.FLOOR * model.a * 0.001)
    assert ms[1] == pytest.approx(model.a * 1.0 + model.b)
    # clamped (the aggregator before 2026-11-23): b cannot go below zero, so the scale absorbs it
    assert OverheadModel().fit(sums[ok], counts[ok], latency[ok], signed_per_kernel=False).b == 0.0
    # too few runs: the kernel sum is trusted as is
    few = OverheadModel().fit(sums[:3], counts[:3], latency[:3])
    assert (few.a, few.b, few.c) == (1.0, 0.0, 0.0)


def test_edge_classifier_trained_on_other_edge_features_is_refused(tmp_path: Path) -> None:
    from inferperf.predict.base import PredictorError

    rng = random.Random(5)
    device = {"id": "d", "features": {"cpu_logical_cpus": 2.0}}
    config = {"intra_op_threads": 1, "opt_level": "all"}
    train = []
    for k in range(6):
        g, y = _random_graph(rng, k)
        train.append(EdgeExample(g, config, device, y, np.ones(len(g.nodes), dtype=bool), "syn", g.name))
    clf = EdgeClassifier(hidden=8, lstm_hidden=8, epochs=1, batch_size=4, seed=0).fit(train)
    state = clf.save(tmp_path)
    assert EdgeClassifier.load(tmp_path, state).predict_proba([(train[0].graph, config, device)])
    older = {**state, "edge_features": state["edge_features"][:-1]}
    with pytest.raises(PredictorError, match="other edge or node features"):
        EdgeClassifier.load(tmp_path, older)
    fewer_nodes = {**state, "structural_features": state["structural_features"][:-1]}
    with pytest.raises(PredictorError, match="train it again"):
        EdgeClassifier.load(tmp_path, fewer_nodes)
    legacy = {k: v for k, v in state.items() if k != "edge_features"}
    legacy["edge_mean"] = legacy["edge_mean"][:-1]
    with pytest.raises(PredictorError, match="train it again"):
        EdgeClassifier.load(tmp_path, legacy)


def test_kernel_cost_prior_prices_node_sets_like_the_additive_model(toy: GraphDataset) -> None:
    from inferperf.predict.additive import LATENCY_COLUMNS, latency_row, nchwc_block, node_latency_rows
    from inferperf.predict.base import PredictorError
    from inferperf.predict.fusion.prior import KernelCostPrior

    s = toy[0]
    block = nchwc_block(s.device)
    rows, whole = node_latency_rows(s.graph, block), latency_row(s.graph, block)
    # per node, the whole graph's row less the per-run columns (call, NCHWc reorders, DRAM weight streaming)
    per_run = [LATENCY_COLUMNS.index(c) for c in ("call", "mb_reorder", "mb_weight_stream")]
    per_node = [i for i in range(len(LATENCY_COLUMNS)) if i not in per_run]
    np.testing.assert_allclose(rows.sum(axis=0)[per_node], whole[per_node], rtol=1e-12)
    assert rows[:, per_run].sum() == 0
    prior = KernelCostPrior().fit(toy)
    every = list(range(len(s.graph.nodes)))
    part = [every[: len(every) // 2], every[len(every) // 2:]]
    whole_ms, *parts_ms = np.exp(prior.log_ms([(s.graph, k, s.config, s.device) for k in [every, *part]]))
    assert whole_ms == pytest.approx(sum(parts_ms), rel=1e-9)  # a kernel's prior is the sum of its nodes'
    again = KernelCostPrior.from_state(prior.state())
    assert again.log_ms([(s.graph, every, s.config, s.device)])[0] == pytest.approx(np.log(whole_ms))
    # a prior saved before a cost term was added prices fewer columns: refused with a clear message
    legacy = {**prior.state(), "latency_columns": None}
    legacy["prices"] = {t: {k: v[:-1] for k, v in table.items()} for t, table in legacy["prices"].items()}
    with pytest.raises(PredictorError, match="train it again"):
        KernelCostPrior.from_state(legacy)


def test_kernel_model_learns_relative_to_its_prior(toy: GraphDataset, tmp_path: Path) -> None:
    on = get_predictor("fusion-kernel", **TINY_FUSION).fit(toy)
    off = get_predictor("fusion-kernel", **TINY_FUSION, kernel_prior=False).fit(toy)
    assert on.kernel_model_.prior is not None and off.kernel_model_.prior is None
    # the prior is an input column too: one more tabular feature than the paper's model
    assert on.kernel_model_.tab_scaler_.mean.size == off.kernel_model_.tab_scaler_.mean.size + 1
    loaded = Predictor.load(on.save(tmp_path / "on"))
    assert loaded.kernel_model_.prior is not None
    s = toy[1]
    assert loaded.predict([s.graph], [s.config], s.device)[0].latency_ms == pytest.approx(
        on.predict([s.graph], [s.config], s.device)[0].latency_ms, rel=1e-6)


def test_share_exponent_is_fitted_on_runs_at_several_shares(toy: GraphDataset) -> None:
    from inferperf.predict.fusion.data import compute_share
    from inferperf.predict.fusion.predictor import fit_share_exponent

    shares = {round(compute_share(s.config, s.device), 4) for s in toy}
    assert len(shares) == 2  # the toy runs are at 1 and 2 threads of 2 CPUs
    gamma, pairs = fit_share_exponent(toy)
    assert pairs > 0 and 0.0 <= gamma <= 1.0
    one_share = GraphDataset([s for s in toy if int(s.config.get("intra_op_threads") or 1) == 1])
    assert fit_share_exponent(one_share) == (None, 0)


def test_a_share_beyond_the_trained_ones_is_predicted_at_the_nearest_and_scaled(toy: GraphDataset) -> None:
    one = GraphDataset([s for s in toy if int(s.config.get("intra_op_threads") or 1) == 1])
    model = get_predictor("fusion-kernel", **TINY_FUSION).fit(one)
    assert model.share_exponent_ == 0.5 and model.share_exponent_pairs_ == 0  # one share: nothing to fit
    s = one[0]
    at_one = model.predict([s.graph], [s.config], s.device)[0]
    at_two = model.predict([s.graph], [{**s.config, "intra_op_threads": 2}], s.device)[0]
    # trained at a half of the machine, asked for all of it: the half's prediction × (0.5 / 1) ** 0.5
    assert at_two.latency_ms == pytest.approx(at_one.latency_ms * 0.5 ** 0.5, rel=1e-6)
    assert at_two.breakdown["share_extrapolation"]["predicted_at"] == pytest.approx(0.5)
    assert "share_extrapolation" not in at_one.breakdown
    assert at_two.breakdown["kernel_sum_ms"] + at_two.breakdown["fixed_ms"] == pytest.approx(at_two.latency_ms)
    fixed = get_predictor("fusion-kernel", **TINY_FUSION, share_exponent=1.0).fit(one)
    assert fixed.share_exponent_ == 1.0


def test_rule_verdict_is_a_node_input(toy: GraphDataset) -> None:
    from inferperf.predict.fusion.edge_classifier import node_inputs, rule_node_features
    from inferperf.predict.fusion.rules import RuleFusion

    s = next(x for x in toy if RuleFusion().partition(x.graph, x.config).edge_fused.any())
    flags = rule_node_features(s.graph, s.config)
    fused = RuleFusion().partition(s.graph, s.config).edge_fused
    for e, f in zip(s.graph.edges, fused, strict=True):
        if f:
            assert flags[e.dst, 0] == 1.0 and flags[e.src, 1] == 1.0
    assert flags[:, 0].sum() == len({e.dst for e, f in zip(s.graph.edges, fused, strict=True) if f})
    with_rules = node_inputs(s.graph, s.config, s.device, rule_nodes=True)
    np.testing.assert_array_equal(with_rules[:, -2:], flags)
    assert with_rules.shape[1] == node_inputs(s.graph, s.config, s.device).shape[1] + 2

def test_edge_classifier_saved_before_rule_nodes_loads_without_them(toy: GraphDataset, tmp_path: Path) -> None:
    examples = edge_examples(toy)
    clf = EdgeClassifier(hidden=16, lstm_hidden=16, epochs=1, seed=0).fit(examples)
    assert clf.rule_nodes is True
    state = clf.save(tmp_path)
    again = EdgeClassifier.load(tmp_path, state)
    assert again.rule_nodes is True
    old = {**state, "params": {k: v for k, v in state["params"].items() if k != "rule_nodes"}}
    assert EdgeClassifier.load(tmp_path, old).rule_nodes is False  # an artifact from before did without them


def test_calibrated_kernel_targets_add_up_to_the_timed_run(toy: GraphDataset) -> None:
    """With calibrate_kernels the kernel model learns each run's kernels rescaled so that they plus the fixed
    cost equal the run's timed latency (the profile gives the shares, the timed run the total); without it,
    the profiled durations. Prediction never sees a latency: the calibration exists only while fitting."""
    from inferperf.predict.fusion.data import profiled_samples
    from inferperf.predict.fusion.predictor import _share_key

    plain = get_predictor("rule-kernel", n_estimators=20).fit(toy)
    cal = get_predictor("rule-kernel", n_estimators=20, calibrate_kernels=True).fit(toy)
    assert cal._calibration is None and plain._calibration is None
    s, lab = profiled_samples(toy)[0]
    raw = np.array([k.duration_ms for k in lab.kernels])
    assert np.array_equal(plain._kernel_durations(s, lab), raw)
    assert np.array_equal(cal._kernel_durations(s, lab), raw)  # after fit: no calibration left
    cal._calibration = cal._fit_aggregators(profiled_samples(toy))
    agg = cal._calibration[1].get(_share_key(s.config, s.device), cal._calibration[0])
    scaled = cal._kernel_durations(s, lab)
    factor = s.label("latency_ms") / (agg.kernel_ms(raw).sum() + agg.c)
    if cal.CALIBRATION_RANGE[0] < factor < cal.CALIBRATION_RANGE[1]:
        # the factor scales the run's kernels *and* its fixed cost to the timed latency (the code's rule: it
        # divides the latency by kernels + fixed cost); the kernels alone sum to the latency less the scaled cost
        assert scaled.sum() + agg.c * factor == pytest.approx(s.label("latency_ms"), rel=1e-9)
    assert np.allclose(scaled / agg.kernel_ms(raw), scaled[0] / agg.kernel_ms(raw)[0])  # shares kept
    cal._calibration = None
    # the aggregator fitted on calibrated sums is close to the identity
    assert cal.overhead_.a == pytest.approx(1.0, abs=0.15)


def test_kernel_level_prior_prices_a_launch_per_kernel(toy: GraphDataset, tmp_path: Path) -> None:
    """Fitted on the kernels themselves, the prior prices each kernel's launch (the call column): splitting a
    node set into two kernels costs one more launch; it tracks the kernels it was fitted on, and survives
    save / load."""
    from inferperf.predict.fusion.data import kernel_examples
    from inferperf.predict.fusion.prior import KernelCostPrior

    examples = kernel_examples(toy)
    prior = KernelCostPrior().fit_kernels(examples, min_kernels=5)
    assert prior.level == "kernel"
    s = toy[0]
    prices = np.asarray(next(iter(prior.prices_["latency_ms"].values())))
    every = list(range(len(s.graph.nodes)))
    whole, a, b = np.exp(prior.log_ms([(s.graph, k, s.config, s.device)
                                       for k in [every, every[: len(every) // 2], every[len(every) // 2:]]]))
    assert a + b == pytest.approx(whole + prices[0], rel=1e-9)
    pred = np.exp(prior.log_ms([(e.graph, e.nodes, e.config, e.device) for e in examples]))
    truth = np.array([e.duration_ms for e in examples])
    run_level = np.exp(KernelCostPrior().fit(toy).log_ms([(e.graph, e.nodes, e.config, e.device) for e in examples]))
    assert np.median(np.abs(np.log(pred / truth))) < np.median(np.abs(np.log(run_level / truth)))
    again = KernelCostPrior.from_state(prior.state())
    assert again.level == "kernel" and np.allclose(again.log_ms([(s.graph, every, s.config, s.device)]),
                                                    np.log(whole))
    p = get_predictor("fusion-kernel", **TINY_FUSION, prior_level="kernel").fit(toy)
    assert p.kernel_model_.prior.level == "kernel"
    assert Predictor.load(p.save(tmp_path / "k")).kernel_model_.prior.level == "kernel"
