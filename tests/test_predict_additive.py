"""The additive cost model: prices are non-negative, recovered from data that is additive, and compose to
architectures never seen in training (the reason the model exists)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferperf.dataset import GraphDataset
from inferperf.ir.graph import Edge, ModelGraph, Node, TensorInfo
from inferperf.predict import get_predictor
from inferperf.predict.additive import (
    LATENCY_COLUMNS,
    fit_prices,
    gemm_tile_factor,
    im2col_mb,
    l3_bytes,
    latency_row,
    nchwc_block,
    recurrent_reread_mb,
    reorder_mb,
    sgemm_tile,
    weight_stream_mb,
)
from inferperf.predict.synthetic import synthetic_dataset


def test_fit_prices_recovers_non_negative_prices():
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 5, size=(60, 4))
    rows[:, 0] = 1.0
    truth = np.array([0.02, 0.5, 0.0, 1.5])
    prices = fit_prices(rows, rows @ truth)
    assert np.all(prices >= 0)
    assert prices == pytest.approx(truth, abs=1e-6)


def _priced(ds: GraphDataset, prices: np.ndarray) -> GraphDataset:
    out = []
    for s in ds:
        labels = dict(s.labels)
        labels["latency_ms"] = float(latency_row(s.graph, nchwc_block(s.device)) @ prices)
        out.append(type(s)(**{**s.__dict__, "labels": labels}))
    return GraphDataset(out, name="priced")


def test_unseen_families_cost_the_sum_of_known_prices():
    ds = synthetic_dataset(per_family=6, batches=(1,), seed=3)
    rng = np.random.default_rng(1)
    prices = rng.uniform(0.0, 0.01, size=len(LATENCY_COLUMNS))
    prices[0] = 0.005  # the per-call overhead
    ds = _priced(ds, prices)
    families = sorted({s.family for s in ds})
    held_out = families[0]
    train = GraphDataset([s for s in ds if s.family != held_out], name="train")
    test = [s for s in ds if s.family == held_out]
    # exactly additive data: no shrinkage needed (the penalty would bias the exact solution)
    model = get_predictor("additive", dev_fraction=0.0, surcharge_penalty=0.0).fit(train)
    pred = model.predict([s.graph for s in test], [s.config for s in test], test[0].device)
    for p, s in zip(pred, test, strict=True):
        assert p.latency_ms == pytest.approx(s.label("latency_ms"), rel=0.05)


def test_surcharge_penalty_prices_a_kind_unseen_in_training():
    # columns: call, all MACs, conv MACs, recurrent MACs (all = conv + recurrent); training has no recurrent
    # work, so its surcharge is unidentified: the penalty moves the price into the shared column
    rng = np.random.default_rng(0)
    conv = rng.uniform(1, 10, size=40)
    rows = np.column_stack([np.ones(40), conv, conv, np.zeros(40)])
    labels = 0.01 + 0.3 * conv
    shrunk = fit_prices(rows, labels, penalised=(2, 3), penalty=1.0)
    unseen = np.array([0.0, 5.0, 0.0, 5.0]) @ shrunk  # 5 MMACs of the unseen kind
    assert unseen > 0.5 * 0.3 * 5
    assert np.mean(np.abs(rows @ shrunk - labels) / labels) < 0.05  # and the training data still fits


def test_prices_are_kept_per_thread_count_and_fall_back_to_the_nearest():
    ds = synthetic_dataset(per_family=6, batches=(1,), threads=(1, 4), seed=4)
    model = get_predictor("additive", dev_fraction=0.0).fit(ds)
    device = ds[0].device
    keys = set(model.prices_["latency_ms"])
    assert {k.split("|")[1] for k in keys} == {"1", "4"}
    g = ds[0].graph
    three = model.predict([g], [{**ds[0].config, "intra_op_threads": 3}], device)[0].latency_ms
    four = model.predict([g], [{**ds[0].config, "intra_op_threads": 4}], device)[0].latency_ms
    assert three == pytest.approx(four)  # 3 threads were never measured: the nearest count's prices


def test_a_device_never_measured_uses_the_nearest_thread_count(tmp_path):
    ds = synthetic_dataset(per_family=6, batches=(1,), threads=(1, 4), seed=4)
    model = get_predictor("additive", dev_fraction=0.0).fit(ds)
    device = ds[0].device
    other = {**device, "id": "never-measured"}
    g, cfg = ds[0].graph, {**ds[0].config, "intra_op_threads": 4}
    here = model.predict([g], [cfg], device)[0].latency_ms
    assert model.predict([g], [cfg], other)[0].latency_ms == pytest.approx(here)
    one = model.predict([g], [{**cfg, "intra_op_threads": 1}], device)[0].latency_ms
    assert one != pytest.approx(here)  # the fallback is not simply the first group
    loaded = type(model).load(model.save(tmp_path / "art"))
    assert loaded.group_runs_ == model.group_runs_
    assert loaded.predict([g], [cfg], other)[0].latency_ms == pytest.approx(here)


def _conv(cout: int, cin: int, k: int, hw: int, group: int = 1) -> Node:
    return Node(index=0, name="c", op_type="Conv", domain="", attributes={"group": group},
                inputs=[TensorInfo("x", (1, cin, hw, hw), "float32"),
                        TensorInfo("w", (cout, cin // group, k, k), "float32", is_weight=True)],
                outputs=[TensorInfo("y", (1, cout, hw, hw), "float32")])


def test_im2col_term_only_for_convolutions_that_miss_the_nchwc_path():
    assert nchwc_block({"features": {"isa_avx512f": 1.0, "isa_avx2": 1.0}}) == 16
    assert nchwc_block({"features": {"isa_avx2": 1.0}}) == 8
    assert nchwc_block({"features": {}}) == 0
    # 512 -> 1 channels, 7x7 on 20x20: the buffer is 512*49*400 floats
    assert im2col_mb(_conv(1, 512, 7, 20), 16) == pytest.approx(512 * 49 * 400 * 4 / 1e6)
    assert im2col_mb(_conv(64, 512, 7, 20), 16) == 0.0  # whole NCHWc blocks
    assert im2col_mb(_conv(24, 512, 3, 20), 16) > 0 and im2col_mb(_conv(24, 512, 3, 20), 8) == 0.0
    assert im2col_mb(_conv(64, 512, 3, 20), 0) > 0  # no NCHWc on this CPU: every k x k convolution
    assert im2col_mb(_conv(1, 512, 1, 20), 16) == 0.0  # 1x1: a plain GEMM, no buffer
    # grouped: NCHWc when each group's channels fill blocks (64 / 4 = 16), im2col per group otherwise
    assert im2col_mb(_conv(64, 64, 3, 20, group=4), 16) == 0.0
    assert im2col_mb(_conv(48, 48, 3, 20, group=6), 16) == pytest.approx(6 * 8 * 9 * 400 * 4 / 1e6)


def _chain(ops: list[tuple[str, tuple[int, ...], dict]], x: tuple[int, ...]) -> ModelGraph:
    """A chain of ops; ``(op, output shape, attributes)``, a Conv's weight shape given as ``attributes["w"]``;
    ``attributes["side"] = k`` also feeds the op the output of node k (a squeeze-excitation Mul)."""
    nodes, edges, prev = [], [], TensorInfo("x", x, "float32")
    for i, (op, shape, attrs) in enumerate(ops):
        ins = [prev]
        if "w" in attrs:
            ins.append(TensorInfo(f"w{i}", attrs["w"], "float32", is_weight=True))
        if "side" in attrs:
            ins.append(nodes[attrs["side"]].outputs[0])
            edges.append(Edge(attrs["side"], i, ins[-1].name, ins[-1].nbytes))
        out = TensorInfo(f"t{i}", shape, "float32")
        nodes.append(Node(i, f"n{i}", op, "", {k: v for k, v in attrs.items() if k == "group"}, ins, [out]))
        if i:
            edges.append(Edge(i - 1, i, prev.name, prev.nbytes))
        prev = out
    return ModelGraph("chain", nodes, edges, [TensorInfo("x", x, "float32")], [prev], 17)


def test_reorder_term_counts_the_copies_around_nchwc_islands():
    fmap = 32 * 8 * 8 * 4 / 1e6  # MB of one (1, 32, 8, 8) feature map
    c = {"w": (32, 32, 3, 3)}
    # a ResNet-like chain stays blocked: the input is reordered in and the output out, once each
    resnet = _chain([("Conv", (1, 32, 8, 8), c), ("Relu", (1, 32, 8, 8), {}), ("Conv", (1, 32, 8, 8), c)],
                    (1, 32, 8, 8))
    assert reorder_mb(resnet, 16) == pytest.approx(2 * fmap)
    assert reorder_mb(resnet, 0) == 0.0  # no NCHWc path on this CPU
    # an RGB stem is read as is: only the output is reordered
    stem = _chain([("Conv", (1, 32, 8, 8), {"w": (32, 3, 3, 3)})], (1, 3, 8, 8))
    assert reorder_mb(stem, 16) == pytest.approx(fmap)
    # a token op between two convolutions (PVT, SegFormer) costs a round trip more
    tokens = _chain([("Conv", (1, 32, 8, 8), c), ("Transpose", (1, 32, 8, 8), {}), ("Conv", (1, 32, 8, 8), c)],
                    (1, 32, 8, 8))
    assert reorder_mb(tokens, 16) == pytest.approx(4 * fmap)
    # a squeeze-excitation multiply broadcasts (1, C, 1, 1) over the map: it runs plain, so the map leaves the
    # blocked layout and comes back for the next convolution
    se = _chain([("Conv", (1, 32, 8, 8), c), ("GlobalAveragePool", (1, 32, 1, 1), {}),
                 ("Sigmoid", (1, 32, 1, 1), {}), ("Mul", (1, 32, 8, 8), {"side": 0}),
                 ("Conv", (1, 32, 8, 8), c)], (1, 32, 8, 8))
    vector = 32 * 4 / 1e6
    assert reorder_mb(se, 16) == pytest.approx(fmap + fmap + vector + fmap + fmap)
    # grouped convolutions run blocked only with whole blocks per group
    grouped8 = _chain([("Conv", (1, 32, 8, 8), {"w": (32, 8, 3, 3), "group": 4})], (1, 32, 8, 8))
    grouped16 = _chain([("Conv", (1, 32, 8, 8), {"w": (32, 16, 3, 3), "group": 2})], (1, 32, 8, 8))
    depthwise = _chain([("Conv", (1, 32, 8, 8), {"w": (32, 1, 3, 3), "group": 32})], (1, 32, 8, 8))
    assert reorder_mb(grouped8, 16) == 0.0
    assert reorder_mb(grouped16, 16) == reorder_mb(depthwise, 16) == pytest.approx(2 * fmap)


def test_depthwise_bytes_are_a_term_of_their_own():
    g = _chain([("Conv", (1, 32, 8, 8), {"w": (32, 1, 3, 3), "group": 32}),
                ("Conv", (1, 32, 8, 8), {"w": (32, 32, 3, 3)})], (1, 32, 8, 8))
    for n in g.nodes:
        n.activation_bytes_read, n.bytes_written = n.inputs[0].nbytes, n.outputs[0].nbytes
        n.weight_bytes = n.inputs[1].nbytes
    col = LATENCY_COLUMNS.index("mb_depthwise")
    depthwise = g.nodes[0]
    assert latency_row(g, 16)[col] == pytest.approx((depthwise.bytes_read + depthwise.bytes_written) / 1e6)
    assert latency_row(g, 16, depthwise_bytes=False)[col] == 0.0
    assert latency_row(g, 16)[LATENCY_COLUMNS.index("mb_conv")] > latency_row(g, 16)[col]  # both convolutions


def test_recurrence_is_priced_as_a_weight_matmul_re_reading_its_weights_every_step():
    lstm = Node(index=0, name="lstm", op_type="LSTM", domain="", attributes={"hidden_size": 128},
                inputs=[TensorInfo("x", (64, 1, 32), "float32"), TensorInfo("W", (1, 512, 32), "float32", True),
                        TensorInfo("R", (1, 512, 128), "float32", True)],
                outputs=[TensorInfo("y", (64, 1, 1, 128), "float32")], macs=64 * 512 * (32 + 128))
    assert recurrent_reread_mb(lstm) == pytest.approx(64 * 4 * 128 * 128 * 4 / 1e6)
    bi = Node(**{**lstm.__dict__, "attributes": {"hidden_size": 128, "direction": "bidirectional"}})
    assert recurrent_reread_mb(bi) == pytest.approx(2 * recurrent_reread_mb(lstm))
    row = dict(zip(LATENCY_COLUMNS, latency_row(ModelGraph("g", [lstm], [], [], [], 17), 16), strict=True))
    assert row["mmacs_matmul_weights"] == pytest.approx(lstm.macs / 1e6) and row["mmacs_recurrent"] == 0
    assert row["mb_matmul"] == pytest.approx(recurrent_reread_mb(lstm))
    unknown = Node(**{**lstm.__dict__, "inputs": [TensorInfo("x", None, "float32")]})
    assert recurrent_reread_mb(unknown) is None


def test_cached_rows_follow_the_switches_and_the_device():
    g = ModelGraph("g", [_conv(1, 512, 7, 20)], [], [], [], 17)
    avx512 = {"id": "a", "features": {"isa_avx512f": 1.0, "isa_avx2": 1.0}}
    on = get_predictor("additive")._latency_row(g, avx512)
    off = get_predictor("additive", im2col=False)._latency_row(g, avx512)
    col = LATENCY_COLUMNS.index("mb_im2col")
    assert on[col] > 0 and off[col] == 0
    assert get_predictor("additive")._latency_row(g, avx512)[col] == on[col]  # served again, same answer
    wide = ModelGraph("g", [_conv(16, 512, 7, 20)], [], [], [], 17)
    assert get_predictor("additive")._latency_row(wide, avx512)[col] == 0
    assert get_predictor("additive")._latency_row(wide, {"id": "b", "features": {}})[col] > 0  # no NCHWc


def test_weight_stream_counts_matrix_vector_weights_beyond_the_cache():
    mb = 1 << 20
    # two 4096x2048 MatMuls at batch 1 (32 MB each, 64 MB of weights): half of them cannot stay in a 32 MB cache
    mlp = _chain([("MatMul", (1, 2048), {"w": (4096, 2048)}), ("MatMul", (1, 4096), {"w": (2048, 4096)})], (1, 4096))
    assert weight_stream_mb(mlp, 32 * mb) == pytest.approx(64 * mb * 0.5 / 1e6)
    assert weight_stream_mb(mlp, 128 * mb) == 0  # everything fits: read from cache every time
    # the same weights read for 128 tokens: compute-bound, no stream term
    tokens = _chain([("MatMul", (128, 2048), {"w": (4096, 2048)}), ("MatMul", (128, 4096), {"w": (2048, 4096)})],
                    (128, 4096))
    assert weight_stream_mb(tokens, 32 * mb) == 0
    row = dict(zip(LATENCY_COLUMNS, latency_row(mlp, 16, l3_bytes=32 * mb), strict=True))
    assert row["mb_weight_stream"] == pytest.approx(weight_stream_mb(mlp, 32 * mb))
    off = dict(zip(LATENCY_COLUMNS, latency_row(mlp, 16, weight_stream=False, l3_bytes=32 * mb), strict=True))
    assert off["mb_weight_stream"] == 0 and off["mb_matmul"] == row["mb_matmul"]


def test_l3_comes_from_the_device_descriptor():
    assert l3_bytes({"features": {"log2_l3_kib": 15.0}}) == 32 << 20
    assert l3_bytes({"features": {"log2_l3_kib": 10.0}}) == 1 << 20
    assert l3_bytes({"features": {}}) == l3_bytes(None) > 0  # unknown: the documented default


def _dense(batch: int, k: int, n: int) -> ModelGraph:
    g = _chain([("MatMul", (batch, n), {"w": (k, n)})], (batch, k))
    g.nodes[0].macs = batch * k * n
    return g


def test_weight_gemm_macs_count_whole_sgemm_tiles():
    """ORT's SGEMM computes 6 x 16 output tiles on the reference CPU: 1 or 4 rows cost what 6 do, 17 columns
    what 32 do — so a batch-4 MLP layer is priced like its batch-1 twin, not 4x (``gemm_tile_factor``)."""
    col = LATENCY_COLUMNS.index("mmacs_matmul_weights")
    b1, b4, b12 = (latency_row(_dense(b, 256, 64), 16, gemm_tile=(6, 16))[col] for b in (1, 4, 12))
    assert b1 == pytest.approx(b4) == pytest.approx(6 * 256 * 64 / 1e6)
    assert b12 == pytest.approx(2 * b1)  # two full row tiles
    assert latency_row(_dense(4, 256, 64), 16)[col] == pytest.approx(4 * 256 * 64 / 1e6)  # untiled: as counted
    assert gemm_tile_factor(_dense(6, 256, 17).nodes[0], (6, 16)) == pytest.approx(32 / 17)
    # an RNN: only the recurrent (H x H) share of its MACs is rounded, to the batch's row tiles
    lstm = Node(index=0, name="lstm", op_type="LSTM", domain="", attributes={"hidden_size": 128},
                inputs=[TensorInfo("x", (64, 4, 128), "float32")], outputs=[TensorInfo("y", (64, 1, 4, 128),
                                                                                     "float32")], macs=1)
    assert gemm_tile_factor(lstm, (6, 16), recurrent=True) == pytest.approx(0.5 + 0.5 * 6 / 4)
    assert gemm_tile_factor(lstm, (1, 1), recurrent=True) == 1.0
    # the tile is the CPU's: measured with AVX2 + FMA; unknown elsewhere, so nothing is rounded
    assert sgemm_tile({"features": {"isa_avx2": 1.0, "isa_fma": 1.0}}) == (6, 16)
    assert sgemm_tile({"features": {"isa_neon": 1.0}}) == sgemm_tile(None) == (1, 1)


def test_an_artifact_from_before_tiles_keeps_pricing_untiled_macs(tmp_path):
    ds = synthetic_dataset(per_family=4, batches=(1,), seed=5)
    model = get_predictor("additive", dev_fraction=0.0).fit(ds)
    meta = model.save(tmp_path / "a") / "meta.json"
    data = json.loads(meta.read_text())
    assert data["state"]["gemm_tiles"] is True
    del data["state"]["gemm_tiles"]  # as written before session 20
    meta.write_text(json.dumps(data))
    assert type(model).load(meta.parent).gemm_tiles is False
