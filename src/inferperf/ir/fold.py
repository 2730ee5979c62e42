"""Weight folding: tensors computed from weights alone are weights.

ONNX exporters often leave work on the parameters in the graph — ALBERT's shared weights reach their MatMuls
through a ``Transpose``, an LSTM's W / R through ``Slice`` + ``Concat`` gate reordering. ONNX Runtime folds
such nodes when it builds the session, so per inference they cost nothing and the MatMul reads a *weight*.
Counted naively, ALBERT's projections looked like activation × activation products and its latency was
under-predicted by 70% (leave-family-out, ``additive``); folded, 12–18%.

The pass works on a built :class:`~inferperf.ir.graph.ModelGraph` (not on ONNX protobufs), so graphs that
were cached before it existed — zoo graphs whose weights were dropped after measuring — are upgraded in place
rather than re-exported.
"""

from __future__ import annotations

from collections import defaultdict

from inferperf.ir.graph import FLOAT_DTYPES, ModelGraph

#: ops ONNX Runtime never constant-folds (their output differs from call to call)
NOT_FOLDABLE = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                          "Bernoulli", "Dropout"})


def fold_weight_subgraphs(graph: ModelGraph) -> int:
    """Mark every tensor computed from weights alone as a weight, in place; returns how many nodes fold.

    A folded node keeps its FLOPs (what it computes) but reads, writes and holds nothing per inference
    (:attr:`Node.is_constant` becomes true); the first consumer of a folded tensor counts its bytes as weight
    bytes instead of activation bytes (the runtime holds the folded copy, not the original). Idempotent.
    The graph's ``peak_activation_bytes`` is the caller's to recompute (folded tensors are no activations):
    the builder computes it once after folding, :func:`~inferperf.ir.build.upgrade_graph` after an upgrade.
    """
    folded: set[str] = set()
    weight_names: set[str] = set()  # weights already counted by some node (a shared weight is counted once)
    consumers: dict[str, list[int]] = defaultdict(list)
    for node in graph.nodes:
        for t in node.inputs:
            if t.name:
                consumers[t.name].append(node.index)
                if t.is_weight:
                    weight_names.add(t.name)
    count = 0
    for node in graph.nodes:
        named = [t for t in node.inputs if t.name]
        if not named or node.op_type in NOT_FOLDABLE or not all(t.is_weight or t.name in folded for t in named):
            continue
        count += 1
        node.weight_bytes = node.activation_bytes_read = node.bytes_written = node.params = 0
        for t in node.inputs:
            t.is_weight = t.is_weight or t.name in folded
        for out in node.outputs:
            if out.name:
                folded.add(out.name)
                out.is_weight = True
    by_index = {n.index: n for n in graph.nodes}
    for name in folded:
        for idx in consumers.get(name, ()):
            consumer = by_index[idx]
            for t in consumer.inputs:
                if t.name != name or t.is_weight:
                    continue
                t.is_weight = True
                consumer.activation_bytes_read -= t.nbytes
                if name not in weight_names:
                    weight_names.add(name)
                    consumer.weight_bytes += t.nbytes
                    if t.dtype in FLOAT_DTYPES:
                        consumer.params += t.numel or 0
    graph.forget_derived()  # sizes, running nodes and everything predictors derived have changed
    return count
