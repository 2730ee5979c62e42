"""The learned per-compute-node cost (:mod:`inferperf.predict.node_cost`) and its use in ``additive-gbm``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from inferperf.dataset import GraphDataset
from inferperf.predict import PredictorError, get_predictor
from inferperf.predict.base import Predictor
from inferperf.predict.node_cost import (
    NODE_COST_FEATURE_NAMES,
    NodeCostModel,
    OtherKernelCostModel,
    compute_nodes,
    graph_node_features,
    node_cost_examples,
    other_kernel_examples,
    other_kernels,
)
from inferperf.predict.synthetic import synthetic_dataset


def _law_ms(node, kind: str) -> float:  # noqa: ANN001
    """A cost law one price per MAC cannot express: convolutions whose output channels miss the 16-wide block
    run 4x slower per MAC, and every kernel pays 2 µs."""
    per_mmac = 0.03
    if kind.startswith("conv"):
        per_mmac = 0.05 if node.inputs[1].shape[0] % 16 == 0 else 0.2
    return 0.002 + node.macs / 1e6 * per_mmac


def _with_kernels(ds: GraphDataset) -> GraphDataset:
    """The synthetic samples with a profiled kernel per compute node (duration from :func:`_law_ms`) and one
    for every other node (which must not count as an example)."""
    out = []
    for s in ds:
        kinds = dict(compute_nodes(s.graph))
        kernels = []
        for i, n in enumerate(s.graph.nodes):
            if n.is_constant:
                continue
            ms = _law_ms(n, kinds[n.index]) if n.index in kinds else _other_law_ms([n])
            kernels.append({"ordinal": i, "name": n.name, "op_type": n.op_type, "kernel_type": n.op_type,
                            "duration_ms": ms, "covered_nodes": [n.name]})
        out.append(dataclasses.replace(s, kernels=kernels))
    return GraphDataset(out, name="synthetic-profiled")


def _other_law_ms(nodes: list) -> float:
    """A non-compute kernel: 2 µs to launch, then its bytes at 20 GB/s."""
    return 0.002 + sum(n.bytes_read + n.bytes_written for n in nodes) / 20e6


def _truth(ds: GraphDataset) -> np.ndarray:
    return np.array([sum(_law_ms(s.graph.nodes[i], k) for i, k in compute_nodes(s.graph)) for s in ds])


@pytest.fixture(scope="module")
def profiled():  # noqa: ANN201
    return _with_kernels(synthetic_dataset(per_family=30, batches=(1, 4), seed=5))


def test_compute_nodes_and_features() -> None:
    ds = synthetic_dataset(per_family=2, batches=(1,), seed=1)
    for s in ds:
        nodes = compute_nodes(s.graph)
        assert all(s.graph.nodes[i].macs > 0 and not s.graph.nodes[i].is_constant for i, _ in nodes)
        idx, x = graph_node_features(s.graph, 16)
        assert list(idx) == [i for i, _ in nodes]
        assert x.shape == (len(nodes), len(NODE_COST_FEATURE_NAMES) - 1)  # the thread count comes with the run
        assert np.isfinite(x).all()
    assert any(k.startswith("conv") for s in ds for _, k in compute_nodes(s.graph))


@pytest.mark.parametrize(("cin", "cout", "block", "factor"), [
    (16, 1, 8, 8.0), (16, 12, 8, 16 / 12), (16, 16, 8, 1.0), (16, 1, 0, 1.0), (12, 16, 8, 16 / 12),
    (12, 1, 8, 8.0 * 16 / 12), (4, 16, 8, 1.0)])
def test_block_macs_count_the_channels_ort_pads_to_whole_blocks(cin: int, cout: int, block: int,
                                                                factor: float) -> None:
    """A blocked (NCHWc) convolution computes whole blocks of channels: a 16 -> 1 channel layer runs 8 output
    channels' MACs where blocks are 8 wide, a 12 -> 16 one 16 input channels' (an input of at most one block
    is counted as is), and exactly its own MACs where the CPU has no NCHWc path."""
    from onnx import TensorProto, helper, numpy_helper

    from inferperf.ir.build import build_graph

    w = numpy_helper.from_array(np.ones((cout, cin, 3, 3), dtype=np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 8, 8])], [w])
    graph = build_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    _, x = graph_node_features(graph, block)
    macs, block_macs = (np.exp2(x[0, NODE_COST_FEATURE_NAMES.index(c)]) for c in ("log2_macs", "log2_block_macs"))
    assert macs == pytest.approx(cout * cin * 9 * 64, rel=1e-6)
    assert block_macs / macs == pytest.approx(factor, rel=1e-6)


def test_examples_are_kernels_holding_one_compute_node(profiled) -> None:  # noqa: ANN001
    x, y = node_cost_examples(list(profiled)[:20])
    expected = sum(len(compute_nodes(s.graph)) for s in list(profiled)[:20])
    assert len(y) == expected and x.shape == (expected, len(NODE_COST_FEATURE_NAMES))
    # a kernel covering two compute nodes says nothing about either
    s = list(profiled)[0]
    both = [i for i, _ in compute_nodes(s.graph)][:2]
    assert len(both) == 2
    names = [s.graph.nodes[i].name for i in both]
    merged = [k for k in s.kernels if k["covered_nodes"][0] not in names]
    merged.append({"ordinal": 999, "name": "fused", "kernel_type": "x", "duration_ms": 1.0, "covered_nodes": names})
    _, y2 = node_cost_examples([dataclasses.replace(s, kernels=merged)])
    assert len(y2) == len(compute_nodes(s.graph)) - 2


def test_learns_a_shape_dependent_cost_a_single_price_cannot(profiled) -> None:  # noqa: ANN001
    train, test = profiled.random_split(seed=0, fractions=(0.7, 0.3))
    model = NodeCostModel(min_examples=50).fit(train)
    assert model.fitted
    pred = model.graph_ms([s.graph for s in test], [s.config for s in test], [s.device for s in test])
    truth = _truth(test)
    err = np.mean(np.abs(pred / truth - 1))
    # the best single price per MAC, fitted on the same training graphs (relative error, as the model is judged)
    macs = np.array([sum(s.graph.nodes[i].macs for i, _ in compute_nodes(s.graph)) for s in test]) / 1e6
    macs_tr = np.array([sum(s.graph.nodes[i].macs for i, _ in compute_nodes(s.graph)) for s in train]) / 1e6
    price = np.median(_truth(train) / macs_tr)
    single = np.mean(np.abs(price * macs / truth - 1))
    assert err < 0.2 and err < 0.5 * single


def test_kernels_larger_than_any_in_training_are_priced_by_the_prior_not_capped(profiled) -> None:  # noqa: ANN001
    # trees on log ms never predict more than the slowest training kernel; as a ratio to the linear prior they
    # carry an efficiency over: graphs whose compute nodes all exceed the training MACs keep the cost law
    macs = {id(s): max((s.graph.nodes[i].macs for i, _ in compute_nodes(s.graph)), default=0) for s in profiled}
    cut = np.quantile(list(macs.values()), 0.6)
    small = [s for s in profiled if macs[id(s)] <= cut]
    large = [s for s in profiled if min((s.graph.nodes[i].macs for i, _ in compute_nodes(s.graph)), default=0) > cut]
    assert len(small) > 20 and len(large) >= 3
    model = NodeCostModel(min_examples=50).fit(small)
    assert model.prior_prices_ is not None and (model.prior_prices_ >= 0).all()
    pred = model.graph_ms([s.graph for s in large], [s.config for s in large], [s.device for s in large])
    capped = NodeCostModel(min_examples=50, prior=False).fit(small)
    assert capped.prior_prices_ is None
    pred_capped = capped.graph_ms([s.graph for s in large], [s.config for s in large], [s.device for s in large])
    truth = _truth(large)
    err, err_capped = np.mean(np.abs(pred / truth - 1)), np.mean(np.abs(pred_capped / truth - 1))
    assert np.median(pred_capped / truth) < 0.8  # the capped trees fall short
    assert err < 0.25 and err < 0.6 * err_capped, (err, err_capped)
    state = model.state()
    again = NodeCostModel.load(None, {**state, "fitted": False})
    np.testing.assert_allclose(again.prior_prices_, model.prior_prices_)


def _rows(kind: int, mmacs: np.ndarray) -> np.ndarray:
    """Node-cost feature rows of one MAC kind with only the MACs set (every other amount 0)."""
    x = np.zeros((len(mmacs), len(NODE_COST_FEATURE_NAMES)))
    x[:, NODE_COST_FEATURE_NAMES.index("kind")] = kind
    x[:, NODE_COST_FEATURE_NAMES.index("log2_macs")] = np.log2(mmacs * 1e6)
    x[:, NODE_COST_FEATURE_NAMES.index("log2_block_macs")] = np.log2(mmacs * 1e6)
    return x


def test_prior_prices_each_mac_kind_and_shrinks_the_surcharges_toward_one_price() -> None:
    """Two kinds at 0.01 and 0.04 ms per MMAC: with no shrinkage the prior keeps both prices, a kind absent
    from training gets the common (cheapest) price, not 0; strong shrinkage pulls both toward one price."""
    rng = np.random.default_rng(0)
    mmacs = rng.uniform(1, 100, 400)
    x = np.vstack([_rows(0, mmacs[:200]), _rows(3, mmacs[200:])])
    y = np.log(np.concatenate([0.01 * mmacs[:200], 0.04 * mmacs[200:]]))
    probe = np.vstack([_rows(0, np.array([10.0])), _rows(3, np.array([10.0])), _rows(5, np.array([10.0]))])

    def priced(shrinkage: float) -> np.ndarray:
        model = NodeCostModel(kind_shrinkage=shrinkage)
        model._fit_prior(x, y)
        return np.exp(model._log_prior(probe))

    free = priced(0.0)
    assert free[0] == pytest.approx(0.1, rel=0.05)
    assert free[1] == pytest.approx(0.4, rel=0.05)
    assert free[2] == pytest.approx(0.1, rel=0.05)  # unseen kind: the common price
    shrunk = priced(100.0)
    assert shrunk[1] / shrunk[0] < 1.2


def test_without_profiles_the_feature_is_missing_not_zero() -> None:
    ds = synthetic_dataset(per_family=20, batches=(1,), seed=2)  # no kernels
    model = NodeCostModel(min_examples=1).fit(ds)
    assert not model.fitted
    assert np.isnan(model.graph_ms([s.graph for s in ds], [s.config for s in ds], [s.device for s in ds])).all()
    gbm = get_predictor("additive-gbm", family_folds=0).fit(ds)
    assert gbm.node_cost_ is not None and not gbm.node_cost_.fitted
    assert np.isfinite(gbm.predict_dataset(ds)["pred"][:, 0]).all()


def test_additive_gbm_round_trip_with_node_cost(profiled, tmp_path) -> None:  # noqa: ANN001
    train, test = profiled.random_split(seed=1, fractions=(0.8, 0.2))
    model = get_predictor("additive-gbm", family_folds=0).fit(train)
    assert model.node_cost_.fitted and model.node_cost_.n_examples_ > 200
    off = get_predictor("additive-gbm", family_folds=0, node_cost=False).fit(train)
    assert off.node_cost_ is None
    art = model.save(tmp_path / "art")
    again = Predictor.load(art)
    np.testing.assert_allclose(again.predict_dataset(test)["pred"][:, 0], model.predict_dataset(test)["pred"][:, 0],
                               rtol=1e-9)
    meta_path = art / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["state"]["node_cost"]["version"] = 0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="train it again"):
        Predictor.load(art)
    assert model.other_kernel_cost_.fitted and off.other_kernel_cost_ is None
    meta["state"]["node_cost"]["version"] = model.node_cost_.state()["version"]
    meta["state"]["other_kernel_cost"]["version"] = 0
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="train it again"):
        Predictor.load(art)


def test_remembered_corrections_follow_the_config_not_the_dict_object() -> None:
    # predict() reuses the batch's correction for the breakdown; a caller that edits the same config dict
    # between calls must still get the prediction for the new content
    ds = synthetic_dataset(per_family=12, batches=(1,), threads=(1, 2), seed=4)
    model = get_predictor("additive-gbm", family_folds=0).fit(ds)
    s = next(x for x in ds if x.config.get("intra_op_threads") == 1)
    config = dict(s.config)
    one = model.predict([s.graph], config, s.device)[0]
    config["intra_op_threads"] = 2
    two = model.predict([s.graph], config, s.device)[0]
    fresh = model.predict([s.graph], {**s.config, "intra_op_threads": 2}, s.device)[0]
    assert two.latency_ms == pytest.approx(fresh.latency_ms, rel=1e-12)
    assert two.latency_ms != pytest.approx(one.latency_ms, rel=1e-3)
    assert two.breakdown["correction_factor"] == pytest.approx(fresh.breakdown["correction_factor"], rel=1e-12)


def test_other_kernel_examples_are_the_profiled_kernels_without_a_compute_node(profiled) -> None:  # noqa: ANN001
    runs = list(profiled)[:20]
    x, types, y = other_kernel_examples(runs)
    expected = sum(1 for s in runs for n in s.graph.nodes
                   if not n.is_constant and n.index not in dict(compute_nodes(s.graph)))
    assert len(y) == len(types) == len(x) == expected > 0
    assert np.isfinite(x).all() and not any(t.startswith(("Conv", "Gemm", "MatMul")) for t in types)
    # the rules' kernels of a graph hold no compute node either, and there is one feature row per kernel
    g = runs[0].graph
    kinds, rows = other_kernels(g)
    assert len(kinds) == len(rows) and not any(t.startswith(("Conv", "Gemm", "MatMul")) for t in kinds)


def test_other_kernel_cost_learns_the_bytes_law_and_sums_the_rules_kernels(profiled) -> None:  # noqa: ANN001
    from inferperf.predict.fusion.rules import rule_partition

    train, test = profiled.random_split(seed=0, fractions=(0.7, 0.3))
    model = OtherKernelCostModel(min_examples=50).fit(train)
    assert model.fitted and model.n_examples_ > 50
    pred = model.graph_ms([s.graph for s in test], [s.config for s in test])
    truth = []
    for s in test:
        part = rule_partition(s.graph, "all", runtime_patterns=True)
        compute = dict(compute_nodes(s.graph))
        truth.append(sum(_other_law_ms([s.graph.nodes[i] for i in k]) for k in part.kernels
                         if not any(i in compute for i in k)))
    truth = np.array(truth)
    has = truth > 0  # graphs whose kernels all hold a compute node predict 0
    assert (pred[~has] == 0).all() and has.sum() > 10
    pred, truth = pred[has], truth[has]
    err = np.mean(np.abs(pred / truth - 1))
    # one price per kernel, fitted on the same training kernels, cannot say that bytes cost
    _, _, y = other_kernel_examples(train)
    counts = np.array([len(other_kernels(s.graph)[0]) for s in test])[has]
    flat = np.mean(np.abs(np.exp(np.median(y)) * counts / truth - 1))
    assert err < 0.15 and err < 0.5 * flat, (err, flat)
    unfitted = OtherKernelCostModel(min_examples=10**9).fit(train)
    assert not unfitted.fitted and np.isnan(unfitted.graph_ms([s.graph for s in test], [s.config for s in test])).all()


def test_an_unseen_kernel_type_is_costed_as_its_class_most_frequent_seen_type(profiled, tmp_path) -> None:  # noqa: ANN001
    """A family's kernel type no other family has (ConvNeXt V2's ReduceL2) is costed as the most frequent seen
    type of its class (Reduce), not as a missing category; a type with no class stays missing, and the mapping
    survives save / load."""
    model = OtherKernelCostModel(min_examples=50).fit(profiled)
    _, types, _ = other_kernel_examples(profiled)
    seen = {t.split(":", 1)[0] for t in types if ":" in t}
    assert seen, "the synthetic profiles have classed kernel types"
    klass = sorted(seen)[0]
    members = [t for t in types if t.startswith(klass + ":")]
    top = max(sorted(set(members)), key=members.count)
    codes = model._codes([f"{klass}:NeverSeenOp", top, "NeverSeenClasslessOp"])
    assert codes[0] == codes[1] == float(model.types_.index(top))
    assert np.isnan(codes[2])
    model.save(tmp_path / "other.txt")
    loaded = OtherKernelCostModel.load(tmp_path / "other.txt", model.state())
    assert loaded._codes([f"{klass}:NeverSeenOp"])[0] == codes[0]
