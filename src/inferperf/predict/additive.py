"""``additive``: a non-negative additive cost model — the latency of a graph is the sum of what its operators
cost, and each kind of cost has one price.

Why it exists: tree ensembles and GNN read-outs on graph-level features do not compose. LightGBM, held out
of EfficientNet, predicted its small variants 3–15x too slow (0.23 ms measured, 3.6 ms predicted) because
"149 nodes" only ever meant a transformer in training. A sum of per-operator costs composes by
construction: an unseen architecture built from known operators costs the sum of known prices. On the
reference data (650 graphs, leave-one-family-out over 36 families) this model had 22.9% mean MAPE against
LightGBM's 33.3% on the same folds (``benchmarks/results/evaluate_lofo_reference.json``).

The design row of a graph (linear, not log: costs add):

- 1 (the runtime's per-call overhead);
- each group below twice: its total (a price every operator pays) and its parts (non-negative surcharges);
- operator counts per category (per-op dispatch overhead; a fused activation costs ~0 and the fit learns
  that from the data);
- MACs per kind — dense / depthwise / grouped convolution, weight / activation matmul, recurrent — in
  millions (compute at that kind's throughput), a weight GEMM's counted over the whole output tiles the
  CPU's SGEMM kernel computes (:func:`gemm_tile_factor`: a batch of 4 rows costs what 6 do);
- bytes read + written per op category, in MB (memory-bound work at that category's bandwidth);
- what the runtime does that the graph does not say: the im2col buffer of convolutions that miss ORT's
  NCHWc path (:func:`im2col_mb`), and the per-step re-read of an RNN's recurrent weights, whose MACs are
  priced as weight-MatMul MACs (:func:`recurrent_reread_mb`), the copies between the NCHWc and the plain
  layout around blocked convolutions (:func:`reorder_mb`), the bytes of depthwise convolutions, which
  run at memory speed (:func:`latency_row`), and the weights matrix-vector products stream from DRAM once
  the model's weights outgrow the last-level cache (:func:`weight_stream_mb`). Operators folded at session
  start cost nothing (:mod:`inferperf.ir.fold`).

Prices are fitted by non-negative least squares (surcharges shrunk towards the shared price, see
:func:`fit_prices`) on the *relative* error (rows weighted by 1 / label), so
a 10 µs MLP counts as much as a 100 ms transformer, separately for each (device, intra-op threads) group:
a thread count changes every price. Prediction for a group that was never measured uses the same
device's nearest thread count (and the OOD flag says the point is outside the training data).

Memory uses the same machinery with its own row: 1, weight MB, peak activation MB, all activation MB, and what
ONNX Runtime holds as simulated by :func:`~inferperf.predict.ort_memory.ort_memory` — initializers kept,
packed / reordered weight copies, the arena's regions, the memory-pattern block — plus executed nodes in
thousands (the session's per-kernel state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inferperf.dataset import GraphDataset
from inferperf.ir.features import OP_CATEGORIES, node_kinds
from inferperf.ir.graph import ModelGraph
from inferperf.predict.base import TARGETS, Predictor, PredictorError, register

MAC_KINDS: tuple[str, ...] = ("conv_dense", "conv_depthwise", "conv_grouped", "matmul_weights",
                              "matmul_activations", "recurrent")
#: column names of the latency / energy design row: each cost has an "all" price that every operator pays
#: and a non-negative surcharge per category / kind, so a kind no training graph had (an LSTM held out with
#: its family) is priced like the average operator instead of free (LOFO on canonical_lstm: 99% -> 63%)
LATENCY_COLUMNS: tuple[str, ...] = (
    "call",
    "n_all", *(f"n_{c}" for c in OP_CATEGORIES),
    "mmacs_all", *(f"mmacs_{k}" for k in MAC_KINDS),
    "mb_all", *(f"mb_{c}" for c in OP_CATEGORIES),
    "mb_im2col", "mb_reorder", "mb_depthwise", "mb_weight_stream",
)
_IM2COL, _REORDER, _DEPTHWISE, _STREAM = (LATENCY_COLUMNS.index(c) for c in ("mb_im2col", "mb_reorder", "mb_depthwise",
                                                                           "mb_weight_stream"))
_CATEGORY_INDEX = {c: i for i, c in enumerate(OP_CATEGORIES)}
_MAC_KIND_INDEX = {k: i for i, k in enumerate(MAC_KINDS)}
#: the last-level cache assumed where a device descriptor does not say (a server CPU's L3 slice)
DEFAULT_L3_BYTES = 32 << 20
#: a weight MatMul reading at most this many rows of activations per weight byte is a matrix-vector product:
#: it does too little arithmetic per weight byte to hide where the weight comes from
GEMV_MAX_ROWS = 4
MEMORY_COLUMNS: tuple[str, ...] = ("base", "weight_mb", "peak_activation_mb", "activation_mb", "held_weight_mb",
                                   "prepacked_mb", "arena_mb", "pattern_mb", "k_nodes")
_FLOOR = 1e-6  # predictions are clipped here before the log (a zero price sum would be log 0)


def nchwc_block(device: dict[str, Any] | None) -> int:
    """ONNX Runtime's NCHWc block on this CPU (16 floats with AVX-512, 8 with AVX2); 0 where the CPU EP has no
    NCHWc path (every k×k convolution then goes through im2col)."""
    features = (device or {}).get("features") or {}
    if features.get("isa_avx512f"):
        return 16
    if features.get("isa_avx2"):
        return 8
    return 0


def sgemm_tile(device: dict[str, Any] | None) -> tuple[int, int]:
    """(rows, columns) of the output tile ONNX Runtime's SGEMM computes at once on this CPU; (1, 1) where it is
    not known (no rounding up).

    Measured on the reference CPU (AMD EPYC with AVX2 and AVX-512F, ORT 1.32, 1 thread;
    ``benchmarks/mlas_tiles.py``): a MatMul by a constant 1,024² weight took 0.043–0.063 ms for 1–6 rows and
    0.092 for 7–8; 1–16 output columns cost the same, 17–32 the same — MLAS's FMA3 kernel, 6 × 16. An
    Intel CPU with AVX-512 may get MLAS's AVX-512 kernel (12 × 32) instead; not measured, so not assumed.
    """
    features = (device or {}).get("features") or {}
    return (6, 16) if features.get("isa_avx2") and features.get("isa_fma") else (1, 1)


def gemm_tile_factor(node: Any, tile: tuple[int, int], recurrent: bool = False) -> float:
    """Tiled MACs over MACs of a weight GEMM (MatMul / Gemm by a constant, or an RNN) when its output rows and
    columns are rounded up to whole tiles; 1.0 where shapes are unknown.

    Why: the kernel computes whole tiles, so 4 rows of a product by a weight cost what 6 do — an MLP at batch 4
    measured 1.0–1.5× its batch-1 time where MACs say 4× (canonical FC held out at batch 4: +35–80%). An RNN
    runs its input projection as one GEMM over every step (rows = steps × batch: the tiles are full) and its
    recurrent product per step with rows = batch, so only the recurrent share of its MACs is rounded. With the
    batch-4 runs of every family in the reference data, leave-family-out 10.18 → 9.94% (seed 0; session 20).
    """
    rows_tile, cols_tile = tile
    if rows_tile <= 1 and cols_tile <= 1:
        return 1.0
    if recurrent:
        dims = _rnn_dims(node)
        if dims is None or not dims[2]:
            return 1.0
        _, batch, inputs, hidden = dims
        batch = max(batch, 1)
        recurrent_share = hidden / (hidden + inputs)  # the H×H product's share of each step's MACs
        return 1.0 - recurrent_share + recurrent_share * -(-batch // rows_tile) * rows_tile / batch
    out = node.outputs[0].shape if node.outputs else None
    if not out or not out[-1]:
        return 1.0
    cols = int(out[-1])
    rows = max(math.prod(int(d) for d in out) // cols, 1)
    return (-(-rows // rows_tile) * rows_tile / rows) * (-(-cols // cols_tile) * cols_tile / cols)


def im2col_mb(node: Any, block: int) -> float:
    """MB of the im2col buffer a dense or grouped (not depthwise) k×k convolution writes and reads when it
    misses the NCHWc path.

    Why: ORT's NCHWc transformer takes a convolution only when its output channels (per group, for a grouped
    one, and its input channels per group too) fill whole blocks; the others run as im2col + GEMM per group,
    memory-bound on a buffer of Cin/g·kh·kw·Hout·Wout floats per group. The plain CNNs of the zoo (1–1024
    channels at random) ran 2–30× below the price per MAC on such layers: a 7×7 convolution from 512 channels
    to 1, 40 MMACs, took 14.9 ms where an NCHWc one takes ~0.5. With this term (LOFO over 36 families, 1,325
    graphs): plain CNNs 42% -> 24%, random DAGs 29% -> 20%, RegNet (group widths of 8, 24, …) 31% -> 18%,
    mean 19.5% -> 17.8%.
    """
    if len(node.inputs) < 2:
        return 0.0
    group = int(node.attributes.get("group", 1) or 1)
    w, out = node.inputs[1].shape, node.outputs[0].shape if node.outputs else None
    if w is None or out is None or len(w) != 4 or len(out) != 4 or w[2] * w[3] <= 1:
        return 0.0
    if block:
        per_group_out = w[0] // group
        if per_group_out % block == 0 and (group == 1 or w[1] % block == 0):
            return 0.0
    return group * w[1] * w[2] * w[3] * out[0] * out[2] * out[3] * 4 / 1e6


#: ops ORT's NCHWc transformer keeps in the blocked layout when their input already is (same-shape inputs
#: for the binary ones)
_NCHWC_PASS = frozenset({"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "MaxPool",
                         "AveragePool",
                         "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Add", "Sum", "Mul", "Concat",
                         "Resize", "Upsample"})


def _nchwc_conv(node: Any, block: int) -> bool:
    """Whether ORT runs this 2-D convolution in the NCHWc layout, as the reference profiles show it doing
    (``com.microsoft.nchwc::Conv`` kernels): every depthwise one; a dense one unless its input channels are
    not a multiple of 4 (an RGB stem is fine: 99.2% of 22,491 dense convolutions ran blocked, whatever their
    output channels — ORT pads them); a grouped one only when the channels per group fill whole blocks (0 of
    558 with 2–12 or 24 channels per group, all 168 with 16, 32, 48, 64 or 96)."""
    if len(node.inputs) < 2 or not node.outputs:
        return False
    w, out = node.inputs[1].shape, node.outputs[0].shape
    if w is None or out is None or len(w) != 4 or len(out) != 4:
        return False
    group = int(node.attributes.get("group", 1) or 1)
    if group == 1:
        return w[1] % 4 == 0 or w[1] < 4
    if w[1] == 1 and w[0] == group:  # depthwise
        return True
    return w[1] % block == 0 and (w[0] // group) % block == 0


def nchwc_blocked_nodes(graph: ModelGraph, block: int) -> frozenset[int]:
    """Indices of the nodes ORT runs in the NCHWc layout: a blocked convolution (:func:`_nchwc_conv`), or a
    pass-through op (:data:`_NCHWC_PASS`) with a blocked input and, for binary ops, no broadcasting. Empty where
    the CPU has no NCHWc path. Memoised on the graph object per block (the latency row and the memory
    simulation both read it)."""
    if not block:
        return frozenset()
    return graph.derived(("nchwc_blocked", int(block)), lambda: frozenset(_nchwc_blocked_nodes(graph, block)))


def tensor_producers(graph: ModelGraph) -> dict[str, int]:
    """Tensor name → index of the node writing it (:meth:`ModelGraph.producers`, memoised on the graph)."""
    return graph.producers()


def _nchwc_blocked_nodes(graph: ModelGraph, block: int) -> set[int]:
    producer = tensor_producers(graph)
    blocked: set[int] = set()
    for n in graph.running_nodes():
        if n.op_type != "Conv" and n.op_type not in _NCHWC_PASS:
            continue
        if not n.outputs or n.outputs[0].shape is None or len(n.outputs[0].shape) != 4:
            continue
        if n.op_type == "Conv":
            if _nchwc_conv(n, block):
                blocked.add(n.index)
            continue
        if not blocked:  # a pass-through op needs a blocked input
            continue
        acts = [t for t in n.inputs if t.name and not t.is_weight and t.shape is not None]
        if not any(producer.get(t.name) in blocked for t in acts):
            continue
        if n.op_type in ("Add", "Sum", "Mul") and any(t.shape != n.outputs[0].shape for t in acts):
            continue
        blocked.add(n.index)
    return blocked


def reorder_mb(graph: ModelGraph, block: int) -> float:
    """MB ORT's NCHWc transformer copies between the blocked and the plain layout (ReorderInput /
    ReorderOutput kernels) around the islands of convolutions it runs blocked.

    Why: a ResNet stays blocked from its first to its last convolution, but a convolution between token
    ops (PVT / SegFormer spatial reduction and Mix-FFN depthwise convolutions) or a squeeze-excitation
    multiply that broadcasts (EfficientNet, RegNetY) leaves the layout and comes back, each time copying the
    whole feature map. Those reorders are 7–10% of the profiled time of PVT, SegFormer, EfficientNet and
    RegNet and under 1% elsewhere; nothing else in the row sees them. Simplified from the transformer: the
    blocked nodes are :func:`nchwc_blocked_nodes`; a tensor is reordered once per direction.
    """
    if not block:
        return 0.0
    blocked = nchwc_blocked_nodes(graph, block)
    if not blocked:  # nothing runs blocked (no convolution): nothing is reordered
        return 0.0
    producer = tensor_producers(graph)
    reordered_in: set[str] = set()
    nbytes = 0
    for n in graph.nodes:
        if n.index not in blocked:
            continue
        acts = [t for t in n.inputs if t.name and not t.is_weight and t.shape is not None]
        if n.op_type == "Conv":
            x = acts[0] if acts else None
            # a plain input is reordered, unless its channels do not fill a block (an image: read as is)
            if (x is not None and producer.get(x.name) not in blocked and x.name not in reordered_in
                    and len(x.shape) == 4 and x.shape[1] >= block):
                reordered_in.add(x.name)
                nbytes += x.nbytes
            continue
        for t in acts:
            if producer.get(t.name) not in blocked and t.name not in reordered_in:
                reordered_in.add(t.name)
                nbytes += t.nbytes
    # a blocked tensor read by a plain consumer, or leaving the graph, is reordered back once
    plain_read = {t.name for n in graph.nodes if n.index not in blocked for t in n.inputs if t.name}
    plain_read |= {t.name for t in graph.outputs}
    for n in graph.nodes:
        if n.index in blocked:
            nbytes += sum(t.nbytes for t in n.outputs if t.name in plain_read)
    return nbytes / 1e6


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _rnn_dims(node: Any) -> tuple[int, int, int, int] | None:
    """(steps, batch, input size, hidden size) of an RNN / GRU / LSTM node from its input's shape and its
    ``layout`` (0: [steps, batch, input], 1: [batch, steps, input]); None if they are unknown."""
    x = node.inputs[0].shape if node.inputs else None
    hidden = int(node.attributes.get("hidden_size", 0) or 0)
    if x is None or len(x) != 3 or not hidden:
        return None
    steps, batch = (x[1], x[0]) if int(node.attributes.get("layout", 0) or 0) == 1 else (x[0], x[1])
    return int(steps), int(batch), int(x[2]), hidden


def recurrent_reread_mb(node: Any) -> float | None:
    """MB of recurrent weights an RNN / GRU / LSTM node reads over its time steps; None if shapes are unknown.

    Why: the runtime computes the input projection of all steps as one GEMM, then per step a GEMV of the
    hidden state against R (gates·H × H), re-reading R every step. That is a batch-1 MatMul repeated
    ``seq`` times — work other families price (MLPs at batch 1) — so the node's MACs are priced as weight
    MatMul MACs and the re-read as MatMul bytes, instead of as a "recurrent" kind nobody else has. The only
    recurrent family, held out: 62% -> 13% LOFO MAPE.
    """
    dims = _rnn_dims(node)
    if dims is None:
        return None
    seq, _, _, hidden = dims
    directions = 2 if node.attributes.get("direction") == "bidirectional" else 1
    return seq * directions * _GATES.get(node.op_type, 4) * hidden * hidden * 4 / 1e6


def node_latency_rows(graph: ModelGraph, block: int = 16, *, im2col: bool = True, recurrent_reread: bool = True,
                      depthwise_bytes: bool = True, gemm_tile: tuple[int, int] = (1, 1)) -> np.ndarray:
    """[len(graph.nodes), len(LATENCY_COLUMNS)] each node's own additive cost terms: what :func:`latency_row`
    sums, node by node, without the per-call and NCHWc-reorder columns (a property of the whole graph, not of
    a node). Priced, a set of nodes costs ``rows[nodes].sum(0) @ prices`` — how the kernel-level predictor
    gets a cost prior for a fused kernel (:mod:`inferperf.predict.fusion.prior`). Folded nodes are zero.
    Weight-GEMM MACs are counted over whole ``gemm_tile`` tiles (:func:`gemm_tile_factor`; (1, 1): as they are)."""
    ncat, nmac = len(OP_CATEGORIES), len(MAC_KINDS)
    o_n, o_mac, o_mb = 2, 2 + ncat + 1, 2 + ncat + 1 + nmac + 1  # offsets of the per-category / per-kind parts
    width = len(LATENCY_COLUMNS)
    # (flat index, value) pairs summed by one bincount: numpy scalar writes per node were most of the time
    at: list[int] = []
    val: list[float] = []
    kinds = node_kinds(graph)
    for n in graph.running_nodes():  # a folded node has no per-inference cost
        base = n.index * width
        cat, kind = kinds[n.index]
        c = _CATEGORY_INDEX[cat]
        moved = (n.bytes_read + n.bytes_written) / 1e6
        at += (base + 1, base + o_n + c, base + o_mb - 1, base + o_mb + c)
        val += (1.0, 1.0, moved, moved)
        if kind == "recurrent" and recurrent_reread:
            reread = recurrent_reread_mb(n)
            if reread is not None:
                kind = "matmul_weights"
                at += (base + o_mb - 1, base + o_mb + _CATEGORY_INDEX["matmul"])
                val += (reread, reread)
        if kind is not None:
            mmacs = n.macs / 1e6
            if kind == "matmul_weights":
                mmacs *= gemm_tile_factor(n, gemm_tile, recurrent=kinds[n.index][1] == "recurrent")
            at += (base + o_mac - 1, base + o_mac + _MAC_KIND_INDEX[kind])
            val += (mmacs, mmacs)
            if im2col and (kind == "conv_dense" or kind == "conv_grouped"):
                at.append(base + _IM2COL)
                val.append(im2col_mb(n, block))
            elif depthwise_bytes and kind == "conv_depthwise":
                at.append(base + _DEPTHWISE)
                val.append(moved)
    size = len(graph.nodes) * width
    if not at:
        return np.zeros((len(graph.nodes), width))
    return np.bincount(np.array(at, dtype=np.int64), weights=val, minlength=size).reshape(len(graph.nodes), width)


def latency_row(graph: ModelGraph, block: int = 16, *, im2col: bool = True, recurrent_reread: bool = True,
                reorder: bool = True, depthwise_bytes: bool = True, weight_stream: bool = True,
                l3_bytes: int = DEFAULT_L3_BYTES, gemm_tile: tuple[int, int] = (1, 1)) -> np.ndarray:
    """[len(LATENCY_COLUMNS)] the additive cost terms of one graph on a CPU with NCHWc ``block``
    (:func:`nchwc_block`); ``im2col`` / ``recurrent_reread`` / ``reorder`` / ``depthwise_bytes`` switch those
    terms off (ablation).

    ``mb_depthwise``, the bytes depthwise convolutions read and write, is a surcharge of its own: a depthwise
    convolution does ~9 MACs per element it reads, so it runs at memory speed, and neither its MACs nor the
    bytes of all convolutions together (dense ones are compute-bound) price it. Leave-one-family-out over the
    36 reference families: 16.27% -> 15.84% alone, 15.66% with the reorder term (EfficientNet 27.2 -> 19.9%).
    """
    row = node_latency_rows(graph, block, im2col=im2col, recurrent_reread=recurrent_reread,
                            depthwise_bytes=depthwise_bytes, gemm_tile=gemm_tile).sum(axis=0)
    row[0] = 1.0
    row[_REORDER] = reorder_mb(graph, block) if reorder else 0.0
    row[_STREAM] = weight_stream_mb(graph, l3_bytes) if weight_stream else 0.0
    return row


def l3_bytes(device: dict[str, Any] | None) -> int:
    """The device's last-level cache in bytes (its descriptor's ``log2_l3_kib``), else :data:`DEFAULT_L3_BYTES`."""
    value = ((device or {}).get("features") or {}).get("log2_l3_kib")
    if value is None or not np.isfinite(value) or value <= 0:
        return DEFAULT_L3_BYTES
    return int(round(2.0 ** float(value) * 1024))


def weight_stream_mb(graph: ModelGraph, cache_bytes: int = DEFAULT_L3_BYTES) -> float:
    """MB of weights that matrix-vector products stream from DRAM, per inference.

    Why: a batch-1 MLP's MatMul reads each weight once and does 2 FLOPs with it, so it runs at the speed of
    wherever the weight lives. While the model's weights fit the last-level cache they stay there between
    inferences; beyond it, a share ``1 - cache / weights`` of them (a cache that evicts at random — a cyclic
    sweep larger than an LRU cache would miss every time) comes from DRAM, several times slower. The
    reference MLPs with 32–128 MB of weights ran 1.7–2x slower than the MatMul byte price said, while
    transformers of the same size did not: their MatMuls read each weight for every token and are
    compute-bound. Counted for weight MatMul / Gemm nodes reading at most :data:`GEMV_MAX_ROWS` rows, and for
    the recurrent weights an RNN re-reads at every step.
    """
    weights: dict[str, int] = {}  # by name: a weight several nodes read (ALBERT's layers) is held once
    streamed = 0
    for n in graph.running_nodes():
        for t in n.inputs:
            if t.is_weight:
                weights[t.name or f"#{id(t)}"] = t.nbytes
        op = n.op_type
        if op in ("MatMul", "Gemm") and len(n.inputs) >= 2 and n.inputs[1].is_weight and n.inputs[0].shape:
            x = n.inputs[0].shape
            rows = math.prod(x[:-1]) if len(x) > 1 else 1
            if op == "Gemm" and n.attributes.get("transA") and len(x) == 2:
                rows = x[1]
            if rows <= GEMV_MAX_ROWS:
                streamed += n.inputs[1].nbytes
        elif op in _GATES:
            reread = recurrent_reread_mb(n)
            if reread is not None:
                streamed += int(reread * 1e6)
    total = sum(weights.values())
    if total <= cache_bytes or not streamed:
        return 0.0
    return streamed * (1.0 - cache_bytes / total) / 1e6


def memory_row(graph: ModelGraph, block: int = 16, *, arena: bool = True) -> np.ndarray:
    """[len(MEMORY_COLUMNS)] the additive memory terms of one graph on a CPU with NCHWc ``block``; ``arena``
    False leaves the simulated ONNX Runtime terms at 0 (ablation: the graph's own sizes only).

    Why the simulation: the heap footprint is weights as the runtime lays them out plus an arena that grows by
    doubling regions; leave-family-out, the graph's sizes alone left CNN families 21–29% off (see
    :mod:`inferperf.predict.ort_memory`).
    """
    row = np.zeros(len(MEMORY_COLUMNS))
    row[:4] = [1.0, graph.weight_bytes / 1e6, graph.peak_activation_bytes / 1e6, graph.activation_bytes / 1e6]
    if arena:
        from inferperf.predict.ort_memory import ort_memory  # it imports this module

        est = ort_memory(graph, block)
        row[4:8] = [est.weights_mb, est.prepacked_mb, est.arena_mb, est.pattern_mb]
    row[8] = len(graph.running_nodes()) / 1e3
    return row


def _group(config: dict[str, Any], device: dict[str, Any]) -> tuple[str, int]:
    return str(device.get("id")), int(config.get("intra_op_threads") or 1)


#: latency columns that are surcharges on a shared price (shrunk towards 0 by ``surcharge_penalty``)
SURCHARGE_COLUMNS: tuple[int, ...] = tuple(
    i for i, c in enumerate(LATENCY_COLUMNS) if c not in ("call", "n_all", "mmacs_all", "mb_all")
)


def fit_prices(
    rows: np.ndarray, labels: np.ndarray, penalised: Sequence[int] = (), penalty: float = 0.0
) -> np.ndarray:
    """Non-negative prices minimising the squared *relative* error of ``rows @ prices`` against ``labels``,
    plus ``penalty`` × the squared (column-scaled) prices of the ``penalised`` columns.

    Why the penalty: without it NNLS is free to put the whole price of every operator in its surcharge and
    leave the shared price at 0, and then a kind of work no training graph had costs nothing (LSTM held out:
    its recurrent MACs were free, 64% MAPE). Shrinking the surcharges makes the shared price carry what the
    kinds have in common (LOFO over 36 families: 20.6% -> 19.7% mean MAPE at penalty 1; canonical_lstm
    93% -> 62%).
    """
    from scipy.optimize import nnls

    weight = 1.0 / labels
    # scale columns to comparable magnitudes so NNLS converges; undo on the way out
    a = rows * weight[:, None]
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    a = a / scale
    b = labels * weight
    if penalty > 0 and len(penalised):
        ridge = np.zeros((len(penalised), rows.shape[1]))
        ridge[np.arange(len(penalised)), list(penalised)] = np.sqrt(penalty)
        a = np.vstack([a, ridge])
        b = np.concatenate([b, np.zeros(len(penalised))])
    prices, _ = nnls(a, b, maxiter=50 * rows.shape[1])
    return prices / scale


@register("additive")
class AdditivePredictor(Predictor):
    """Sum of per-operator costs with non-negative prices per (device, threads); see the module docstring."""

    name = "additive"
    default_family_folds = 5  # cheap to refit: intervals for unseen families from out-of-family residuals

    def __init__(
        self,
        *,
        min_runs: int = 8,
        surcharge_penalty: float = 1.0,
        im2col: bool = True,
        recurrent_reread: bool = True,
        reorder: bool = True,
        depthwise_bytes: bool = True,
        weight_stream: bool = True,
        arena: bool = True,
        gemm_tiles: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_runs = min_runs
        self.surcharge_penalty = surcharge_penalty
        self.im2col = im2col
        self.recurrent_reread = recurrent_reread
        self.reorder = reorder
        self.depthwise_bytes = depthwise_bytes
        #: price the weights matrix-vector products stream from beyond the cache (:func:`weight_stream_mb`)
        self.weight_stream = weight_stream
        #: price the simulated ONNX Runtime memory terms (False: the graph's own sizes only; ablation)
        self.arena = arena
        #: count weight-GEMM MACs over whole SGEMM tiles (:func:`gemm_tile_factor`; False: ablation)
        self.gemm_tiles = gemm_tiles

    def _latency_row(self, graph: ModelGraph, device: dict[str, Any]) -> np.ndarray:
        # a graph's row is the same in every fit: the family cross-fitting (5 refits) and the evaluation's
        # folds reuse the graph objects, and the rows are most of a fit's time
        key = (nchwc_block(device), self.im2col, self.recurrent_reread, self.reorder, self.depthwise_bytes,
               self.weight_stream, l3_bytes(device), sgemm_tile(device) if self.gemm_tiles else (1, 1))
        return graph.derived(("latency_row", *key), lambda: latency_row(
            graph, key[0], im2col=self.im2col, recurrent_reread=self.recurrent_reread, reorder=self.reorder,
            depthwise_bytes=self.depthwise_bytes, weight_stream=self.weight_stream, l3_bytes=key[6],
            gemm_tile=key[7]))

    def _memory_row(self, graph: ModelGraph, device: dict[str, Any]) -> np.ndarray:
        block = nchwc_block(device)
        return graph.derived(("memory_row", block, self.arena), lambda: memory_row(graph, block, arena=self.arena))

    def _derived_keys(self) -> tuple[str, ...]:
        return ("latency_row", "memory_row")

    def _derive(self, graph: ModelGraph, config: dict[str, Any], device: dict[str, Any]) -> None:
        self._latency_row(graph, device)
        self._memory_row(graph, device)

    def _latency_rows(self, graphs: Sequence[ModelGraph], devices: Sequence[dict[str, Any]]) -> np.ndarray:
        return (np.stack([self._latency_row(g, d) for g, d in zip(graphs, devices, strict=True)])
                if graphs else np.zeros((0, len(LATENCY_COLUMNS))))

    def _rows(
        self, graphs: Sequence[ModelGraph], devices: Sequence[dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        mem = (np.stack([self._memory_row(g, d) for g, d in zip(graphs, devices, strict=True)])
               if graphs else np.zeros((0, len(MEMORY_COLUMNS))))
        return self._latency_rows(graphs, devices), mem

    def _fit(self, train: GraphDataset, dev: GraphDataset | None) -> None:
        samples = list(train)  # nothing to select on dev: the fit is convex; calibration keeps its own half
        lat, mem = self._rows([s.graph for s in samples], [s.device for s in samples])
        groups = [_group(s.config, s.device) for s in samples]
        labels = {t: np.array([s.label(t) if s.label(t) is not None else np.nan for s in samples]) for t in TARGETS}
        self.prices_: dict[str, dict[str, list[float]]] = {}
        self.group_runs_: dict[str, int] = {}
        for g in groups:
            key = f"{g[0]}|{g[1]}"
            self.group_runs_[key] = self.group_runs_.get(key, 0) + 1
        for t in TARGETS:
            rows = mem if t == "memory_mb" else lat
            penalised = () if t == "memory_mb" else SURCHARGE_COLUMNS
            y = labels[t]
            pen = self.surcharge_penalty
            per_group: dict[str, list[float]] = {}
            for g in sorted(set(groups)):
                idx = np.array([i for i, gg in enumerate(groups) if gg == g and np.isfinite(y[i]) and y[i] > 0])
                if len(idx) >= self.min_runs:
                    per_group[f"{g[0]}|{g[1]}"] = fit_prices(rows[idx], y[idx], penalised, pen).tolist()
            if not per_group:  # too few per group: one price list for all
                ok = np.isfinite(y) & (y > 0)
                if ok.sum() >= 2:
                    per_group["*|0"] = fit_prices(rows[ok], y[ok], penalised, pen).tolist()
            self.prices_[t] = per_group

    def _prices_for(self, target: str, config: dict[str, Any], device: dict[str, Any]) -> np.ndarray | None:
        table = self.prices_.get(target) or {}
        if not table:
            return None
        dev, threads = _group(config, device)
        exact = table.get(f"{dev}|{threads}")
        if exact is not None:
            return np.asarray(exact)
        same_device = [(abs(int(k.split("|")[1]) - threads), k) for k in table if k.split("|")[0] == dev]
        if same_device:
            return np.asarray(table[min(same_device)[1]])
        # a device never measured: the nearest thread count, and among those the best-measured group (the OOD
        # flag already says the point is outside the training data)
        runs = getattr(self, "group_runs_", {})
        key = min(table, key=lambda k: (abs(int(k.split("|")[1]) - threads), -runs.get(k, 0), k))
        return np.asarray(table[key])

    def _predict_log(
        self,
        graphs: Sequence[ModelGraph],
        configs: Sequence[dict[str, Any]],
        devices: Sequence[dict[str, Any]],
    ) -> np.ndarray:
        lat, mem = self._rows(graphs, devices)
        out = np.full((len(graphs), len(TARGETS)), np.nan)
        for i, (c, d) in enumerate(zip(configs, devices, strict=True)):
            for j, t in enumerate(TARGETS):
                prices = self._prices_for(t, c, d)
                if prices is not None:
                    row = mem[i] if t == "memory_mb" else lat[i]
                    out[i, j] = np.log(max(float(row @ prices), _FLOOR))
        return out

    def _breakdown(self, graph: ModelGraph, config: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
        """``by_term``: the latency split into its priced cost terms (ms, largest first) — what the model thinks
        the time goes to, e.g. weight-MatMul MACs vs normalisation bytes; the terms sum to ``latency_ms``."""
        prices = self._prices_for("latency_ms", config, device)
        if prices is None:
            return {}
        row = self._latency_row(graph, device)
        terms = {col: float(v) for col, v in zip(LATENCY_COLUMNS, row * prices, strict=True) if v > 0}
        return {"by_term": dict(sorted(terms.items(), key=lambda kv: -kv[1]))}

    def _save_state(self, directory: Path) -> dict[str, Any]:
        return {"prices": self.prices_, "group_runs": self.group_runs_, "latency_columns": list(LATENCY_COLUMNS),
                "memory_columns": list(MEMORY_COLUMNS), "gemm_tiles": bool(self.gemm_tiles)}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        if list(state.get("latency_columns") or []) != list(LATENCY_COLUMNS) or list(
                state.get("memory_columns") or MEMORY_COLUMNS) != list(MEMORY_COLUMNS):
            raise PredictorError(
                f"{directory}: this additive artifact prices other cost terms than this version computes; "
                "train it again (inferperf train --predictor additive)"
            )
        self.prices_ = {t: {k: list(v) for k, v in table.items()} for t, table in state["prices"].items()}
        self.group_runs_ = {k: int(v) for k, v in (state.get("group_runs") or {}).items()}
        # the MACs the prices were fitted on: an artifact from before tiles (session 20) priced them untiled
        self.gemm_tiles = bool(state.get("gemm_tiles", False))
