"""What ONNX Runtime's CPU execution provider holds for a graph: its weights as laid out after prepacking, and the
regions of its BFC arena — simulated from the graph, without running it.

Why: the memory label (:mod:`inferperf.measure.memory`) is the model's heap footprint, and most of it is not
"weights + peak activations". Traced on this machine (``ort.set_default_logger_severity(0)``), the arena of
a plain CNN whose activations peak at 2.1 MB held 8 MB: the first inference allocated tensor by tensor and
grew the arena to 2 + 2 MB; the second one asked for the memory-pattern block (2.1 MB) in one piece, which
fits neither region, so the arena grew by the next power of two (4 MB). Regions double, so the arena is a step
function of the activation sizes and its steps are as large as the activations themselves: the CNN families,
whose footprint is mostly activations, were the worst of the memory predictions (canonical ResNets 28.7%,
plain CNNs 22.0%, random DAGs 21.3% leave-family-out). Weights are laid out anew too: a MatMul or Gemm with
a constant B holds it packed (columns padded to 16; once per weight — ALBERT's layers share one packed copy,
as measured), and NCHWc convolutions hold their weights reordered and padded to the SIMD block.

The simulation follows ONNX Runtime's own rules, simplified:

- kernels are the fusion rules' kernels (:class:`~inferperf.predict.fusion.rules.RuleFusion`), plus
  ``x * Sigmoid(x)`` as one (ORT's QuickGelu): a fused Conv+Relu writes one tensor, not two; constant-folded
  nodes hold no activations;
- the allocation planner: ``Reshape``-like ops alias their input; an activation or Softmax writes into an
  input that dies there and has its size (in place: measured per op, :data:`INPLACE_OPS`); otherwise a freed
  buffer of exactly the output's size is reused; otherwise a new buffer is allocated; a buffer is freed after
  its last reader; a few kernels allocate temporaries while they run (:data:`SCRATCH_PER_OUTPUT`);
- tensors of NCHWc-blocked nodes have their channels padded to the block, and a tensor crossing between the
  blocked and the plain layout is copied (ORT's ReorderInput / ReorderOutput);
- the first inference replays that trace through a best-fit-with-coalescing arena whose regions grow by
  powers of two (:class:`BFCArenaModel`, ONNX Runtime's ``kNextPowerOfTwo`` strategy, 1 MB first region);
- the memory pattern lays the same trace out in one block (best-fit gaps, else at the end), and the second
  inference asks the arena for that block in one piece.

Checked against the arena ONNX Runtime logs it grows (``benchmarks/ort_arena_check.py``, 240 reference graphs
over the 36 families on an AVX2 machine): the simulated arena is the logged one to the byte for 84% of them,
and a miss is one doubling, mostly in vision transformers whose first stage ORT keeps alive longer than the
planner rules here say (PVT, SegFormer). It is a model, not a measurement: its outputs are priced terms and
inputs to a learned correction (:mod:`inferperf.predict.additive`, :mod:`inferperf.predict.additive_gbm`),
never a label.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from inferperf.ir.graph import ModelGraph
from inferperf.predict.additive import _nchwc_conv, nchwc_blocked_nodes, tensor_producers

_MB = 1024.0 * 1024.0
#: ONNX Runtime's BFC arena defaults (``OrtArenaCfg``): first region, rounding, dead-space limit, largest step
ARENA_INITIAL_BYTES = 1 << 20
ARENA_ROUND_BYTES = 256
ARENA_MAX_DEAD_BYTES = 128 << 20
ARENA_MAX_STEP_BYTES = 1 << 30
#: MLAS packs a GEMM's B matrix in panels of 16 columns
PACK_COLUMNS = 16
#: ops whose output is a view of their first input (the planner aliases, nothing is allocated)
ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
#: ops whose CPU kernel may write its output into an input buffer that dies there (``MayInplace``), as
#: measured on ORT's CPU EP (a chain x -> Sin -> op -> Sin with malloc traced: no allocation for the op's
#: output); binary elementwise ops, the GELUs, Erf, Sqrt, Exp, Neg, Abs, Reciprocal allocate
INPLACE_OPS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "Elu", "Selu", "Softplus",
                         "ThresholdedRelu", "Softmax", "Identity"})
#: temporaries a CPU kernel allocates while it runs, in multiples of its output (same measurement): Where
#: selects X and Y into two output-sized buffers and merges them; HardSwish and the bias GELU keep one
SCRATCH_PER_OUTPUT = {"Where": 2.0, "HardSwish": 1.0, "BiasGelu": 1.0}


@dataclass(frozen=True)
class OrtMemoryEstimate:
    """The simulated footprint of one graph, in MB (2^20 bytes, like the label)."""

    weights_mb: float  # initializers still held after prepacking
    prepacked_mb: float  # packed / reordered copies made at session start
    first_run_peak_mb: float  # bytes of planned buffers live at once during the first inference
    pattern_mb: float  # the memory-pattern block of later inferences
    arena_mb: float  # the arena's regions after two inferences
    arena_regions: int


class BFCArenaModel:
    """Best-fit-with-coalescing arena with ONNX Runtime's power-of-two growth; sizes in bytes.

    Free chunks are kept per region as sorted (offset, size) lists; allocation takes the smallest free chunk
    that fits (lowest address on ties), splits it when the remainder is at least as large as the request or
    over the dead-space limit, and grows the arena by a new region when nothing fits.
    """

    def __init__(self, initial_bytes: int = ARENA_INITIAL_BYTES) -> None:
        self.region_bytes = initial_bytes  # the size of the next region
        self.regions: list[int] = []
        self._free: list[list[tuple[int, int]]] = []  # per region: sorted (offset, size)
        self._used: dict[int, tuple[int, int, int]] = {}  # handle -> (region, offset, size)
        self._next = 0

    @staticmethod
    def rounded(nbytes: int) -> int:
        return max(1, math.ceil(nbytes / ARENA_ROUND_BYTES)) * ARENA_ROUND_BYTES

    @property
    def total_bytes(self) -> int:
        return sum(self.regions)

    def _extend(self, rounded: int) -> None:
        increased = False
        while rounded > self.region_bytes:
            self.region_bytes *= 2
            increased = True
        size = self.region_bytes
        if not increased:
            self.region_bytes = min(self.region_bytes * 2, max(ARENA_MAX_STEP_BYTES, size))
        self.regions.append(size)
        self._free.append([(0, size)])

    def _best_fit(self, rounded: int) -> tuple[int, int] | None:
        best: tuple[int, int, int] | None = None  # (size, region, index)
        for r, chunks in enumerate(self._free):
            for k, (_, size) in enumerate(chunks):
                if size >= rounded and (best is None or size < best[0]):
                    best = (size, r, k)
        return None if best is None else (best[1], best[2])

    def alloc(self, nbytes: int) -> int:
        """Allocate; returns a handle for :meth:`free`."""
        rounded = self.rounded(nbytes)
        found = self._best_fit(rounded)
        if found is None:
            self._extend(rounded)
            found = (len(self.regions) - 1, 0)
        r, k = found
        offset, size = self._free[r].pop(k)
        if size >= 2 * rounded or size - rounded >= ARENA_MAX_DEAD_BYTES:
            bisect.insort(self._free[r], (offset + rounded, size - rounded))
            size = rounded
        handle = self._next
        self._next += 1
        self._used[handle] = (r, offset, size)
        return handle

    def free(self, handle: int) -> None:
        r, offset, size = self._used.pop(handle)
        chunks = self._free[r]
        k = bisect.bisect_left(chunks, (offset, size))
        if k < len(chunks) and chunks[k][0] == offset + size:  # merge with the next free chunk
            size += chunks.pop(k)[1]
        if k > 0 and chunks[k - 1][0] + chunks[k - 1][1] == offset:  # and the previous one
            offset, prev = chunks.pop(k - 1)
            size += prev
            k -= 1
        chunks.insert(k, (offset, size))


def pattern_block_bytes(events: list[tuple[str, int, int]]) -> int:
    """The memory-pattern block of an allocation trace: each allocation goes into the smallest gap between
    live blocks that holds it, else after the last one; the block is the largest end reached."""
    live: dict[int, tuple[int, int]] = {}  # handle -> (offset, size)
    block = 0
    for kind, handle, size in events:
        if kind == "free":
            live.pop(handle, None)
            continue
        size = math.ceil(size / 64) * 64
        spans = sorted(live.values())
        best, waste, current = None, None, 0
        for off, sz in spans:
            if off >= current:
                gap = off - current
                if gap >= size and (waste is None or gap - size < waste):
                    best, waste = current, gap - size
            current = max(current, off + sz)
        offset = best if best is not None else current
        live[handle] = (offset, size)
        block = max(block, offset + size)
    return block


def _padded_bytes(t: Any, block: int) -> int:
    shape = t.shape
    if not block or shape is None or len(shape) != 4:
        return t.nbytes
    return t.nbytes // max(shape[1], 1) * (math.ceil(shape[1] / block) * block) if shape[1] else t.nbytes


def weight_layout_mb(graph: ModelGraph, block: int) -> tuple[float, float]:
    """(initializers still held, packed / reordered copies), MB, after ORT prepares the weights.

    A MatMul / Gemm with a 2-D constant B packs it (columns padded to :data:`PACK_COLUMNS`); an NCHWc
    convolution holds its weights reordered with both channel dimensions padded to the block. A weight shared
    by several nodes (ALBERT's layers) is packed once: measured, ALBERT's footprint is its weights, not a copy
    per layer. An initializer every consumer replaced by a copy is released.
    """
    held: dict[str, int] = {}
    replaced: dict[str, int] = {}  # initializer -> consumers that made their own copy
    consumers: dict[str, int] = {}
    packed_names: set[str] = set()
    packed = 0
    for n in graph.running_nodes():
        for t in n.inputs:
            if t.name and t.is_weight:
                if t.name not in held:
                    held[t.name] = t.nbytes
                consumers[t.name] = consumers.get(t.name, 0) + 1
        op = n.op_type
        copy_of: str | None = None
        if op in ("MatMul", "Gemm", "FusedMatMul") and len(n.inputs) >= 2 and n.inputs[1].is_weight:
            w = n.inputs[1]
            if w.shape is not None and len(w.shape) == 2:
                k, cols = (w.shape[1], w.shape[0]) if op == "Gemm" and n.attributes.get("transB") else w.shape
                if w.name not in packed_names:
                    packed += k * math.ceil(cols / PACK_COLUMNS) * PACK_COLUMNS * 4
                    packed_names.add(w.name)
                copy_of = w.name
        elif op == "Conv" and block and len(n.inputs) >= 2 and n.inputs[1].is_weight and _nchwc_conv(n, block):
            w = n.inputs[1]
            if w.shape is not None and len(w.shape) == 4:
                group = int(n.attributes.get("group", 1) or 1)
                pad = lambda c: math.ceil(c / block) * block  # noqa: E731
                cin = w.shape[1] if (group == 1 and w.shape[1] < 4) or w.shape[1] == 1 else pad(w.shape[1])
                if w.name not in packed_names:
                    packed += pad(w.shape[0]) * cin * w.shape[2] * w.shape[3] * 4
                    packed_names.add(w.name)
                if len(n.inputs) >= 3 and n.inputs[2].is_weight and n.inputs[2].name not in packed_names:
                    packed += pad(w.shape[0]) * 4
                    packed_names.add(n.inputs[2].name)
                    replaced[n.inputs[2].name] = replaced.get(n.inputs[2].name, 0) + 1
                copy_of = w.name
        if copy_of is not None:
            replaced[copy_of] = replaced.get(copy_of, 0) + 1
    kept = sum(size for name, size in held.items() if replaced.get(name, 0) < consumers.get(name, 0))
    return kept / _MB, packed / _MB


@dataclass(slots=True)
class _Step:
    """One kernel as the planner sees it: what it reads and writes, and how it may place its output."""

    reads: list[str]
    writes: list[tuple[str, int]]  # (tensor, bytes)
    alias: bool = False  # the output is a view of the first input
    inplace: bool = False  # the output may take over an input buffer that dies here
    scratch: int = 0  # bytes the kernel allocates and frees while it runs


def _with_quick_gelu(graph: ModelGraph, kernels: list[list[int]], producer: dict[str, int]) -> list[list[int]]:
    """``x * Sigmoid(x)`` (SiLU / swish) as one kernel: ORT fuses it (QuickGelu), so the sigmoid's output is
    never materialised. The documented rules leave that fusion out on purpose (they are the nn-Meter-style
    baseline); the footprint simulation wants what ORT does (MobileViT's arena was a doubling too large)."""
    if not any(n.op_type == "Sigmoid" for n in graph.nodes):
        return kernels
    kernel_of = {i: k for k, nodes in enumerate(kernels) for i in nodes}
    readers: dict[str, int] = {}
    for n in graph.nodes:
        for t in n.inputs:
            if t.name:
                readers[t.name] = readers.get(t.name, 0) + 1
    for n in graph.nodes:
        if n.op_type != "Mul" or len(n.inputs) != 2 or n.index not in kernel_of:
            continue
        for a, b in ((0, 1), (1, 0)):
            sig = producer.get(n.inputs[a].name)
            if sig is None or graph.nodes[sig].op_type != "Sigmoid" or readers.get(n.inputs[a].name) != 1:
                continue
            if not graph.nodes[sig].inputs or graph.nodes[sig].inputs[0].name != n.inputs[b].name:
                continue
            ks, km = kernel_of.get(sig), kernel_of[n.index]
            if ks is not None and ks != km and len(kernels[ks]) == 1:
                kernels[km] = sorted(kernels[km] + kernels[ks])
                kernels[ks] = []
                kernel_of[sig] = km
            break
    return [k for k in kernels if k]


def _steps(graph: ModelGraph, block: int, config: dict[str, Any] | None) -> tuple[list[_Step], set[str]]:
    """The executed kernels in order, with NCHWc reorders inserted; and the tensors the run hands back."""
    from inferperf.predict.fusion.rules import rule_partition

    part = rule_partition(graph, str((config or {}).get("opt_level", "all")))
    nodes_ = graph.nodes
    producer = tensor_producers(graph)
    blocked = nchwc_blocked_nodes(graph, block)
    kernels = _with_quick_gelu(graph, [list(k) for k in part.kernels], producer)
    kernel_of = {i: k for k, nodes in enumerate(kernels) for i in nodes}
    graph_inputs = {t.name for t in graph.inputs}
    executed = part.executed
    # an eliminated Identity / Dropout passes its input through
    passthrough = {t.name: n.inputs[0].name for n in nodes_
                   if n.op_type in ALIAS_OPS and n.inputs and n.index not in kernel_of and not executed[n.index]
                   for t in n.outputs if t.name}

    def resolve(name: str) -> str:
        for _ in range(64):
            if name not in passthrough:
                break
            name = passthrough[name]
        return name

    outputs = {resolve(t.name) for t in graph.outputs}
    # per kernel node: its activation inputs read from outside the kernel, as (resolved name, tensor)
    node_reads: dict[int, list[tuple[str, Any]]] = {}
    read_anywhere: set[str] = set()
    external: set[str] = set()  # tensors read by a kernel other than their producer's
    for i, k in kernel_of.items():
        ins = []
        for t in nodes_[i].inputs:
            tname = t.name
            if not tname or t.is_weight:  # weights are never activations: no buffer, not an output
                continue
            name = resolve(tname) if passthrough else tname
            read_anywhere.add(name)
            src = producer.get(tname)
            if src is not None and kernel_of.get(src) == k and tname not in graph_inputs:
                continue  # produced inside the kernel
            base = producer.get(name)
            if base is None:
                if name not in graph_inputs:
                    continue
            elif kernel_of.get(base) != k:
                external.add(name)
            ins.append((name, t))
        node_reads[i] = ins
    is_blocked_tensor: dict[str, bool] = {}
    steps: list[_Step] = []
    copies: dict[str, str] = {}  # tensor -> its copy in the other layout
    for nodes in sorted(kernels, key=lambda k: k[-1]):
        last = nodes_[nodes[-1]]
        main = nodes_[max(nodes, key=lambda i: nodes_[i].macs)] if len(nodes) > 1 else last
        in_blocked = main.index in blocked or last.index in blocked
        reads: list[str] = []
        for i in nodes:
            for name, t in node_reads[i]:
                shape = t.shape
                if block and shape is not None and len(shape) == 4:
                    src_blocked = is_blocked_tensor.get(name, False)
                    if src_blocked != in_blocked and (src_blocked or shape[1] >= block):
                        if name not in copies:  # ORT's ReorderInput / ReorderOutput, once per tensor
                            copies[name] = f"{name}@{'blocked' if in_blocked else 'plain'}"
                            size = _padded_bytes(t, block) if in_blocked else t.nbytes
                            steps.append(_Step(reads=[name], writes=[(copies[name], size)]))
                            is_blocked_tensor[copies[name]] = in_blocked
                        name = copies[name]
                if name not in reads:
                    reads.append(name)
        writes = []
        for i in nodes:
            for t in nodes_[i].outputs:
                tname = t.name
                if not tname or t.is_weight:
                    continue
                if tname in read_anywhere and tname not in external and tname not in outputs:
                    continue  # read only inside its kernel: never materialised
                writes.append((tname, _padded_bytes(t, block) if in_blocked else t.nbytes))
                is_blocked_tensor[tname] = in_blocked
        kind = "BiasGelu" if last.op_type == "Gelu" and len(nodes) > 1 else last.op_type
        scratch = SCRATCH_PER_OUTPUT.get(kind)
        steps.append(_Step(reads=reads, writes=writes, alias=len(nodes) == 1 and main.op_type in ALIAS_OPS,
                           inplace=(len(nodes) == 1 and last.op_type in INPLACE_OPS) or (
                               main.op_type == "Conv" and any(nodes_[i].op_type in ("Add", "Sum")
                                                             for i in nodes)),
                           scratch=int(scratch * sum(size for _, size in writes)) if scratch else 0))
    shapes = {t.name: t for name in outputs if name in producer for t in nodes_[producer[name]].outputs
              if t.name == name}
    held = set()
    for name in outputs:  # a blocked graph output is reordered back to the plain layout
        if is_blocked_tensor.get(name) and name in shapes:
            copy = f"{name}@plain"
            steps.append(_Step(reads=[name], writes=[(copy, shapes[name].nbytes)]))
            held.add(copy)
        else:
            held.add(name)
    return steps, held


def ort_memory(graph: ModelGraph, block: int = 16, config: dict[str, Any] | None = None) -> OrtMemoryEstimate:
    """Simulate what ORT's CPU EP holds for ``graph`` after two inferences (see the module docstring); cached per
    graph object and block for the default fusion settings."""
    if config is None:
        return graph.derived(("ort_memory", block), lambda: _simulate(graph, block, None))
    return _simulate(graph, block, config)


def _simulate(graph: ModelGraph, block: int, config: dict[str, Any] | None) -> OrtMemoryEstimate:
    weights_mb, prepacked_mb = weight_layout_mb(graph, block)
    steps, held = _steps(graph, block, config)
    readers: dict[str, int] = {}
    for st in steps:
        for name in st.reads:
            readers[name] = readers.get(name, 0) + 1

    buffer_of: dict[str, int] = {}  # tensor -> buffer id
    buffer_size: list[int] = []
    buffer_users: list[int] = []  # readers still to come, over every tensor sharing the buffer
    born: list[int] = []  # step of the buffer's first writer
    died: list[int | None] = []  # step after which nothing reads it (None: handed back to the caller)
    free_by_size: dict[int, list[int]] = {}

    def release(b: int, step: int) -> None:
        died[b] = step
        free_by_size.setdefault(buffer_size[b], []).append(b)

    for step, st in enumerate(steps):
        reads = [name for name in st.reads if name in buffer_of]
        for name, size in st.writes:
            chosen: int | None = None
            if name in held:
                pass  # a graph output gets a buffer of its own, handed to the caller
            elif st.alias and reads:
                chosen = buffer_of[reads[0]]
            elif st.inplace:
                for r in reads:
                    b = buffer_of[r]
                    if died[b] is not None and buffer_users[b] == 1 and buffer_size[b] == size:
                        chosen = b
                        break
            if chosen is None and name not in held and free_by_size.get(size):
                chosen = free_by_size[size].pop()
            if chosen is None:
                chosen = len(buffer_size)
                buffer_size.append(size)
                buffer_users.append(0)
                born.append(step)
                died.append(step)
            buffer_of[name] = chosen
            buffer_users[chosen] += readers.get(name, 0)
            if name in held:
                died[chosen] = None
        for name in reads:
            b = buffer_of[name]
            buffer_users[b] -= 1
            if buffer_users[b] <= 0 and died[b] is not None:
                release(b, step)
        for name, _ in st.writes:  # written, never read
            b = buffer_of[name]
            if buffer_users[b] <= 0 and died[b] is not None and b not in free_by_size.get(buffer_size[b], ()):
                release(b, step)

    # the first inference: each step's new buffers and scratch, then what it frees
    births: dict[int, list[int]] = {}
    deaths: dict[int, list[int]] = {}
    for b in range(len(buffer_size)):
        births.setdefault(born[b], []).append(b)
        if died[b] is not None:
            deaths.setdefault(died[b], []).append(b)
    arena = BFCArenaModel()
    handles: dict[int, int] = {}
    events: list[tuple[str, int, int]] = []
    live = peak = 0
    for step, st in enumerate(steps):
        for b in births.get(step, ()):
            handles[b] = arena.alloc(buffer_size[b])
            events.append(("alloc", b, buffer_size[b]))
            live += buffer_size[b]
        peak = max(peak, live + st.scratch)
        if st.scratch:
            arena.free(arena.alloc(st.scratch))
        for b in deaths.get(step, ()):
            arena.free(handles.pop(b))
            events.append(("free", b, buffer_size[b]))
            live -= buffer_size[b]
    kept = {b for b in range(len(buffer_size)) if died[b] is None}
    pattern = pattern_block_bytes([e for e in events if e[1] not in kept])
    if pattern:
        arena.alloc(pattern)  # the second inference: the whole pattern in one piece
    return OrtMemoryEstimate(weights_mb=weights_mb, prepacked_mb=prepacked_mb, first_run_peak_mb=peak / _MB,
                             pattern_mb=pattern / _MB, arena_mb=arena.total_bytes / _MB,
                             arena_regions=len(arena.regions))
