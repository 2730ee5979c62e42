"""Static cost formulas (FLOPs and MACs) for one ONNX operator.

The graph builder calls :func:`node_cost` once per node after shape inference. Every formula works from the
static shapes and attributes only, never from tensor values, so it also runs on graphs whose weights were
stripped.

Counting conventions (chosen once, applied everywhere, so totals are comparable across models):

* ``macs`` counts multiply-accumulates of dense linear algebra only (convolutions, matrix products, Einsum
  contractions, attention score/context products, recurrent-cell matrix products). It is the quantity papers
  quote as "GMACs" and matches onnx-tool for Conv / Gemm / MatMul (onnx-tool adds one MAC per output for a
  bias where we count a FLOP instead).
* ``flops`` counts every arithmetic operation: a multiply-add is 2, an add / multiply / divide / compare /
  select / min / max / square root is 1, and a transcendental function (exp, log, erf, tanh, sin, cos, pow) is
  :data:`TRANSCENDENTAL` = 4 — vectorised implementations evaluate a short polynomial, so such an op really
  costs several arithmetic instructions, and pure "1 per function" counting would make softmax look as cheap
  as an add. Composite activations are the sum of their parts; the per-element constants live in the tables
  below with their derivation.
* Pure data movement (Reshape, Transpose, Concat, Gather, Cast, Pad, ...) costs 0 FLOPs: its runtime is
  memory traffic, which the builder records separately as bytes.

:func:`node_cost` returns ``None`` for an op without a formula (the builder records a warning) and also when
a formula needs a shape that shape inference left unknown; it never answers 0 for something it cannot cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from inferperf.ir.graph import DEFAULT_DOMAINS, TensorInfo

MS_DOMAIN = "com.microsoft"
NCHWC_DOMAIN = "com.microsoft.nchwc"

#: FLOPs charged for one transcendental function evaluation (exp, log, erf, tanh, sin, cos, pow).
TRANSCENDENTAL = 4
T = TRANSCENDENTAL
#: sigmoid(x) = 1 / (1 + exp(-x)): exp + add + divide (the negation folds into the exp argument).
SIGMOID = T + 2
#: exact GELU 0.5·x·(1 + erf(x/√2)): scale, erf, add, two multiplies.
GELU_ERF = T + 4
#: tanh GELU 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): x³ (2), scale, add, scale, tanh, add, 2 multiplies.
GELU_TANH = T + 7
#: softmax per element: running max (1), subtract (1), exp, running sum (1), normalise (1).
SOFTMAX = T + 4
#: requantisation of one integer accumulator: scale multiply, round, add zero point, saturate.
REQUANT = 4
#: layer / instance / group norm per element before the affine part: mean accumulation (1), centre (1),
#: square-accumulate (2), multiply by the inverse standard deviation (1).
NORM_CORE = 5
#: RMS norm per element before the scale: square-accumulate (2), multiply by the inverse RMS (1).
RMS_CORE = 3
#: per normalised row: two divides by the row length, add epsilon, reciprocal square root.
NORM_ROW = 4


@dataclass(frozen=True)
class Cost:
    """Static compute cost of one node; see the module docstring for the counting conventions."""

    flops: int  # every arithmetic op; a multiply-add counts 2
    macs: int  # multiply-accumulates of dense linear algebra only

    def __post_init__(self) -> None:
        if self.flops < 0 or self.macs < 0:
            raise ValueError(f"negative cost {self}")

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.macs + other.macs)


ZERO = Cost(0, 0)


# ---- the call context handed to every formula ----------------------------------------------------------
@dataclass(frozen=True)
class _Call:
    op_type: str
    domain: str
    attrs: dict[str, Any]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    def inp(self, i: int) -> TensorInfo | None:
        """Input ``i``, or None when it is absent (optional input left empty or trailing inputs omitted)."""
        if i < len(self.inputs) and self.inputs[i].name != "":
            return self.inputs[i]
        return None

    def has(self, i: int) -> bool:
        return self.inp(i) is not None

    def in_shape(self, i: int) -> tuple[int, ...] | None:
        t = self.inp(i)
        return None if t is None else t.shape

    def out_shape(self, i: int = 0) -> tuple[int, ...] | None:
        if i < len(self.outputs) and self.outputs[i].name != "":
            return self.outputs[i].shape
        return None

    def attr(self, name: str, default: Any = None) -> Any:
        v = self.attrs.get(name, default)
        if isinstance(v, bytes):
            return v.decode()
        return v

    def present_inputs(self) -> list[TensorInfo]:
        return [t for t in self.inputs if t.name != ""]


CostFn = Callable[[_Call], Cost | None]


def _prod(xs: Iterable[int]) -> int:
    return math.prod(int(x) for x in xs)


def _numel(shape: Sequence[int] | None) -> int | None:
    return None if shape is None else _prod(shape)


def broadcast_shapes(*shapes: Sequence[int] | None) -> tuple[int, ...] | None:
    """Numpy-style broadcast of static shapes; None if any is unknown or they are incompatible."""
    known = [tuple(s) for s in shapes if s is not None]
    if len(known) != len(shapes):
        return None
    rank = max((len(s) for s in known), default=0)
    out: list[int] = []
    for k in range(rank):
        dims = {s[len(s) - rank + k] for s in known if len(s) - rank + k >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _elementwise_out_numel(c: _Call) -> int | None:
    """Output element count of an element-wise op, from the output or else the broadcast of the inputs."""
    shape = c.out_shape(0)
    if shape is None:
        shape = broadcast_shapes(*(t.shape for t in c.present_inputs()))
    return _numel(shape)


# ---- element-wise ops ----------------------------------------------------------------------------------
#: FLOPs per output element of unary / binary element-wise ops and activations (default ONNX domain).
ELEMENTWISE_FLOPS: dict[str, int] = {
    # arithmetic, comparison, logic, rounding: one operation each
    **dict.fromkeys(
        ("Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Sign", "Reciprocal", "Sqrt", "Floor", "Ceil",
         "Round", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor",
         "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "IsNaN", "IsInf", "Relu",
         "Where", "ThresholdedRelu"),
        1,
    ),
    # transcendental functions
    **dict.fromkeys(
        ("Exp", "Log", "Erf", "Tanh", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
         "Acosh", "Atanh", "Pow"),
        T,
    ),
    "LeakyRelu": 2,  # compare, multiply
    "PRelu": 2,  # compare, multiply by the broadcast slope
    "Clip": 2,  # max, min
    "Shrink": 2,  # compare, add/subtract bias
    "Softsign": 3,  # abs, add, divide
    "HardSigmoid": 4,  # multiply, add, max, min
    "HardSwish": 5,  # x · hardsigmoid(x)
    "Sigmoid": SIGMOID,
    "Swish": SIGMOID + 2,  # x · sigmoid(alpha·x)
    "Elu": T + 3,  # compare, exp, subtract 1, multiply alpha
    "Celu": T + 4,  # compare, divide by alpha, exp, subtract, multiply
    "Selu": T + 4,  # Elu + scale
    "Softplus": 2 * T + 1,  # log(1 + exp(x))
    "Mish": 3 * T + 2,  # x · tanh(softplus(x))
    "Gelu": GELU_ERF,  # opset 20; approximate="tanh" is handled in _gelu
}

#: ORT contrib element-wise ops ("com.microsoft"), FLOPs per output element.
MS_ELEMENTWISE_FLOPS: dict[str, int] = {
    "Gelu": GELU_ERF,
    "BiasGelu": GELU_ERF + 1,  # bias add then exact GELU
    "FastGelu": GELU_TANH,  # + 1 when the optional bias is given (see _fast_gelu)
    "QuickGelu": SIGMOID + 2,  # x · sigmoid(alpha·x)
    "BiasAdd": 2,  # X + bias + skip
    "BiasSoftmax": SOFTMAX + 1,  # add bias, softmax
    "RotaryEmbedding": 3,  # x·cos + rotate_half(x)·sin
}

#: activation names used by FusedConv / FusedGemm / NCHWc Conv ``activation`` attributes.
_FUSED_ACTIVATION_FLOPS: dict[str, int] = {
    "Relu": 1, "LeakyRelu": 2, "Tanh": T, "Sigmoid": SIGMOID, "Clip": 2, "HardSigmoid": 4, "Elu": T + 3,
    "HardSwish": 5, "Swish": SIGMOID + 1, "Gelu": GELU_ERF,  # fused Swish has no alpha: x · sigmoid(x)
}


def _elementwise(per_elem: int, c: _Call) -> Cost | None:
    n = _elementwise_out_numel(c)
    return None if n is None else Cost(n * per_elem, 0)


def _gelu(c: _Call) -> Cost | None:
    per = GELU_TANH if c.attr("approximate", "none") == "tanh" else GELU_ERF
    return _elementwise(per, c)


def _fast_gelu(c: _Call) -> Cost | None:
    return _elementwise(GELU_TANH + (1 if c.has(1) else 0), c)


def _variadic(extra: int, c: _Call) -> Cost | None:
    """Sum / Max / Min (``extra`` 0) and Mean (``extra`` 1, the final divide): n-1 combines per element."""
    n = _elementwise_out_numel(c)
    if n is None:
        return None
    return Cost(n * (max(len(c.present_inputs()) - 1, 0) + extra), 0)


def _bias_dropout(c: _Call) -> Cost | None:
    """ORT BiasDropout at inference: X + bias (+ residual); the dropout itself is the identity."""
    return _elementwise(1 + (1 if c.has(2) else 0), c)


def _zero(_: _Call) -> Cost:
    return ZERO


def _per_input_elem(per_elem: int, c: _Call) -> Cost | None:
    n = _numel(c.in_shape(0))
    return None if n is None else Cost(n * per_elem, 0)


def _per_output_elem(per_elem: int, c: _Call) -> Cost | None:
    n = _numel(c.out_shape(0))
    return None if n is None else Cost(n * per_elem, 0)


def _activation_flops(c: _Call) -> int | None:
    """Per-element FLOPs of a fused ``activation`` attribute; None for an activation we have no cost for."""
    act = c.attr("activation", "")
    if not act:
        return 0
    return _FUSED_ACTIVATION_FLOPS.get(act)


# ---- convolution ---------------------------------------------------------------------------------------
def conv_output_spatial(
    in_spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    auto_pad: str = "NOTSET",
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """Spatial output size of a convolution / pooling window (ONNX semantics).

    Needed because ORT's NCHWc and some contrib ops have no shape-inference schema, so their output shapes
    are often unknown even though inputs and attributes fully determine them.
    """
    k = len(kernel)
    strides = list(strides or [1] * k)
    dilations = list(dilations or [1] * k)
    pads = list(pads or [0] * (2 * k))
    out = []
    for i in range(k):
        eff = (kernel[i] - 1) * dilations[i] + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-in_spatial[i] // strides[i]))
        elif auto_pad == "VALID":
            out.append((in_spatial[i] - eff) // strides[i] + 1)
        else:
            span = in_spatial[i] + pads[i] + pads[i + k] - eff
            o = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
            out.append(o)
    return tuple(out)


def _conv_core(c: _Call, x_idx: int, w_idx: int, channels_last: bool = False) -> tuple[int, int] | None:
    """(MACs, output element count) of a convolution.

    MACs = batch · ∏(output spatial) · numel(W): with W of shape [M, Cin/groups, k...] this equals
    out_numel · (Cin/groups) · ∏kernel for any group count, and it stays right for ORT's NCHWc convolution,
    whose tensors are [N, C padded to the channel block, H, W] and whose weights keep a 4-D OIHW shape
    padded the same way (the padded channels are computed, so they count).
    """
    x, w = c.in_shape(x_idx), c.in_shape(w_idx)
    if x is None or w is None or len(w) < 3:
        return None
    k = len(w) - 2
    kernel = c.attr("kernel_shape") or list(w[2:])
    out = c.out_shape(0)
    if out is not None and len(out) >= k + 2:
        spatial = tuple(out[1:1 + k]) if channels_last else tuple(out[2:2 + k])
    else:
        in_sp = x[1:1 + k] if channels_last else x[2:2 + k]
        if len(in_sp) != k:
            return None
        spatial = conv_output_spatial(in_sp, kernel, c.attr("strides"), c.attr("pads"), c.attr("dilations"),
                                      c.attr("auto_pad", "NOTSET"))
    batch = x[0]
    macs = batch * _prod(spatial) * _prod(w)
    out_numel = _prod(out) if out is not None else batch * _prod(spatial) * w[0]
    return macs, out_numel


def _conv(c: _Call, x_idx: int = 0, w_idx: int = 1, b_idx: int | None = 2, sum_idx: int | None = None,
          channels_last: bool = False, requant: bool = False) -> Cost | None:
    core = _conv_core(c, x_idx, w_idx, channels_last)
    if core is None:
        return None
    macs, out_n = core
    act = _activation_flops(c)
    if act is None:
        return None
    per_out = act
    per_out += 1 if b_idx is not None and c.has(b_idx) else 0
    per_out += 1 if sum_idx is not None and c.has(sum_idx) else 0
    per_out += REQUANT if requant else 0
    return Cost(2 * macs + per_out * out_n, macs)


def _conv_transpose(c: _Call) -> Cost | None:
    """Each input pixel scatters through W [Cin, M/groups, k...]: MACs = batch · ∏(in spatial) · numel(W)."""
    x, w = c.in_shape(0), c.in_shape(1)
    if x is None or w is None or len(w) < 3:
        return None
    k = len(w) - 2
    macs = x[0] * _prod(x[2:2 + k]) * _prod(w)
    flops = 2 * macs
    if c.has(2):
        out_n = _numel(c.out_shape(0))
        if out_n is None:
            return None
        flops += out_n
    return Cost(flops, macs)


# ---- matrix products -----------------------------------------------------------------------------------
def _matmul_core(a: Sequence[int], b: Sequence[int]) -> tuple[int, int] | None:
    """(MACs, output numel) of numpy-semantics matmul: 1-D operands promoted, batch dims broadcast."""
    a2 = (1, *a) if len(a) == 1 else tuple(a)
    b2 = (*b, 1) if len(b) == 1 else tuple(b)
    if len(a2) < 2 or len(b2) < 2:
        return None
    m, k = a2[-2], a2[-1]
    k2, n = b2[-2], b2[-1]
    if k != k2:
        return None
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    if batch is None:
        return None
    out_n = _prod(batch) * m * n
    return out_n * k, out_n


def _matmul(c: _Call, a_idx: int = 0, b_idx: int = 1, per_out: int = 0) -> Cost | None:
    a, b = c.in_shape(a_idx), c.in_shape(b_idx)
    if a is None or b is None:
        return None
    core = _matmul_core(a, b)
    if core is None:
        return None
    macs, out_n = core
    return Cost(2 * macs + per_out * out_n, macs)


def _gemm(c: _Call, a_idx: int = 0, b_idx: int = 1, c_idx: int | None = 2,
          y_scale_idx: int | None = None) -> Cost | None:
    """Y = alpha·op(A)·op(B) + beta·C with the alpha / beta scalings charged only when they are not 1."""
    a, b = c.in_shape(a_idx), c.in_shape(b_idx)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if c.attr("transA", 0) else (a[0], a[1])
    n = b[0] if c.attr("transB", 0) else b[1]
    macs = m * n * k
    per_out = 0 if float(c.attr("alpha", 1.0)) == 1.0 else 1
    beta = float(c.attr("beta", 1.0))
    if c_idx is not None and c.has(c_idx) and beta != 0.0:
        per_out += 1 if beta == 1.0 else 2
    act = _activation_flops(c)
    if act is None:
        return None
    per_out += act + (REQUANT if y_scale_idx is not None and c.has(y_scale_idx) else 0)
    return Cost(2 * macs + per_out * m * n, macs)


def _fused_matmul(c: _Call) -> Cost | None:
    """ORT FusedMatMul: alpha·op(A)·op(B) with transA/transB and the batch-transposing transBatchA/B."""
    a, b = c.in_shape(0), c.in_shape(1)
    if a is None or b is None:
        return None
    ta, tb = c.attr("transA", 0), c.attr("transB", 0)
    tba, tbb = c.attr("transBatchA", 0), c.attr("transBatchB", 0)
    per_out = 0 if float(c.attr("alpha", 1.0)) == 1.0 else 1
    if not (tba or tbb) and len(a) >= 2 and len(b) >= 2:
        a2 = (*a[:-2], a[-1], a[-2]) if ta else tuple(a)
        b2 = (*b[:-2], b[-1], b[-2]) if tb else tuple(b)
        core = _matmul_core(a2, b2)
    elif not (ta or tb or tba or tbb):
        core = _matmul_core(a, b)
    else:
        # batch-transposed operands: the output shape fixes M·N·batch, A's contracted dim fixes K
        out = c.out_shape(0)
        if out is None or len(a) < 2:
            return None
        contracted = (0 if tba else -2) if ta else -1
        k = a[contracted]
        core = (_prod(out) * k, _prod(out))
    if core is None:
        return None
    macs, out_n = core
    return Cost(2 * macs + per_out * out_n, macs)


def _matmul_nbits(c: _Call) -> Cost | None:
    """ORT MatMulNBits: A [..., K] times block-quantised B, with B dequantised once (2 FLOPs per weight)."""
    a = c.in_shape(0)
    k, n = c.attr("K"), c.attr("N")
    if a is None or k is None or n is None:
        return None
    rows = _prod(a[:-1])
    macs = rows * int(k) * int(n)
    bias = rows * int(n) if c.has(5) else 0
    return Cost(2 * macs + 2 * int(k) * int(n) + bias, macs)


# ---- Einsum --------------------------------------------------------------------------------------------
def parse_einsum(equation: str, shapes: Sequence[Sequence[int]]) -> tuple[list[str], str, dict[str, int]]:
    """Split an Einsum equation into operand subscripts, output subscripts and index sizes.

    Ellipses are expanded to private index letters (upper-case Greek, never valid ONNX subscripts), and an
    implicit output (no ``->``) keeps the indices that occur exactly once, in alphabetical order.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum '{equation}' has {len(terms)} operands, got {len(shapes)} shapes")
    ell_rank = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes, strict=True)),
                   default=0)
    ell_letters = "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠ"[:max(ell_rank, 0)]
    expanded: list[str] = []
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            n_ell = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", ell_letters[len(ell_letters) - n_ell:] if n_ell else "")
        if len(term) != len(shape):
            raise ValueError(f"einsum term '{term}' does not match rank-{len(shape)} operand")
        for ch, d in zip(term, shape, strict=True):
            # a size-1 dimension broadcasts against the index's other occurrences
            sizes[ch] = max(sizes.get(ch, 1), int(d))
        expanded.append(term)
    if arrow:
        out = rhs.replace("...", ell_letters)
    else:
        counts: dict[str, int] = {}
        for t in expanded:
            for ch in t:
                counts[ch] = counts.get(ch, 0) + 1
        once = sorted(ch for ch, n in counts.items() if n == 1 and ch not in ell_letters)
        out = ell_letters + "".join(once)
    return expanded, out, sizes


def einsum_cost(equation: str, shapes: Sequence[Sequence[int]]) -> Cost:
    """Cost of evaluating an Einsum as ORT does: operands contracted pairwise from left to right.

    A pairwise step multiplies over the union of both operands' indices; it is a contraction (MACs) when
    some index is summed away in that step, otherwise a plain element-wise / outer product (FLOPs only). A
    single operand that drops indices is a reduction (one add per input element).
    """
    terms, out, sizes = parse_einsum(equation, shapes)
    if len(terms) == 1:
        reduced = set(terms[0]) - set(out)
        return Cost(_prod(sizes[ch] for ch in set(terms[0])) if reduced else 0, 0)
    flops = macs = 0
    cur = terms[0]
    for i in range(1, len(terms)):
        nxt = terms[i]
        later = set(out).union(*terms[i + 1:])
        union = list(dict.fromkeys(cur + nxt))
        kept = "".join(ch for ch in union if ch in later)
        step = _prod(sizes[ch] for ch in union)
        if set(union) - set(kept):
            macs += step
            flops += 2 * step
        else:
            flops += step
        cur = kept
    return Cost(flops, macs)


def _einsum(c: _Call) -> Cost | None:
    shapes = [t.shape for t in c.present_inputs()]
    eq = c.attr("equation")
    if eq is None or any(s is None for s in shapes):
        return None
    try:
        return einsum_cost(eq, shapes)  # type: ignore[arg-type]
    except (ValueError, KeyError):
        return None


# ---- normalisation, softmax, reductions ----------------------------------------------------------------
def _batch_norm(c: _Call) -> Cost | None:
    """Inference BN folds to x·a + b per element; the per-channel a, b cost add, sqrt, divide, multiply."""
    x = c.in_shape(0)
    if x is None:
        return None
    channels = x[1] if len(x) > 1 else 1
    return Cost(2 * _prod(x) + 4 * channels, 0)


def _rows(shape: Sequence[int], axis: int) -> int:
    axis = axis if axis >= 0 else axis + len(shape)
    return _prod(shape[:axis])


def _layer_norm(c: _Call, scale_idx: int = 1, bias_idx: int | None = 2, core: int = NORM_CORE,
                extra_per_elem: int = 0) -> Cost | None:
    """LayerNormalization-like: ``extra_per_elem`` (residual / bias adds) before normalising, then the
    normalisation core and the affine scale (and shift, when ``bias_idx`` is given and present)."""
    x = c.in_shape(0)
    if x is None:
        return None
    n = _prod(x)
    per = extra_per_elem + core
    per += 1 if c.has(scale_idx) else 0
    per += 1 if bias_idx is not None and c.has(bias_idx) else 0
    rows = _rows(x, int(c.attr("axis", -1))) if x else 1
    return Cost(n * per + rows * NORM_ROW, 0)


def _skip_layer_norm(c: _Call, rms: bool = False) -> Cost | None:
    """SkipLayerNormalization: input + skip (+ bias) then LayerNorm; the RMS variant has no beta."""
    bias_idx = 3 if rms else 4
    extra = 1 + (1 if c.has(bias_idx) else 0)
    if rms:
        return _layer_norm(c, scale_idx=2, bias_idx=None, core=RMS_CORE, extra_per_elem=extra)
    return _layer_norm(c, scale_idx=2, bias_idx=3, extra_per_elem=extra)


def _instance_norm(c: _Call) -> Cost | None:
    """Instance / group norm: statistics per (sample, channel-group), affine per channel."""
    x = c.in_shape(0)
    if x is None:
        return None
    n = _prod(x)
    if c.op_type == "GroupNormalization":
        groups = int(c.attr("num_groups", 1))
    elif c.op_type == "GroupNorm":  # ORT NHWC variant, with an optional fused SiLU
        groups = int(c.attr("groups", 1))
    else:
        groups = x[1] if len(x) > 1 else 1
    per = NORM_CORE + (1 if c.has(1) else 0) + (1 if c.has(2) else 0)
    if c.op_type == "GroupNorm" and int(c.attr("activation", 0)):
        per += SIGMOID + 1
    return Cost(n * per + x[0] * groups * NORM_ROW, 0)


def _lp_norm(c: _Call) -> Cost | None:
    x = c.in_shape(0)
    if x is None:
        return None
    n = _prod(x)
    axis = int(c.attr("axis", -1))
    rows = n // x[axis] if x and x[axis] else 0
    return Cost(3 * n + rows, 0)  # |x| or x² and accumulate (2), divide (1); one root per row


def _lrn(c: _Call) -> Cost | None:
    size = int(c.attr("size", 1))
    return _per_input_elem(2 * size + T + 3, c)  # window square-sum, pow, scale, add bias, divide


def _log_softmax(c: _Call) -> Cost | None:
    x = c.in_shape(0)
    if x is None:
        return None
    n = _prod(x)
    axis = int(c.attr("axis", -1))
    rows = n // x[axis] if x and x[axis] else 0
    return Cost(n * (T + 4) + rows * T, 0)  # max, subtract, exp, sum, subtract; one log per row


def _reduce(per_in: int, per_out: int, c: _Call) -> Cost | None:
    """Reductions: ``per_in`` FLOPs per input element, ``per_out`` per output element (mean, root, log)."""
    n_in = _numel(c.in_shape(0))
    if n_in is None:
        return None
    if per_out == 0:
        return Cost(n_in * per_in, 0)
    n_out = _numel(c.out_shape(0))
    if n_out is None:
        return None
    return Cost(n_in * per_in + n_out * per_out, 0)


def _topk(c: _Call) -> Cost | None:
    """Heap selection: about log2(k) comparisons per input element; k read from the output's axis."""
    x, y = c.in_shape(0), c.out_shape(0)
    if x is None or y is None or not x:
        return None
    axis = int(c.attr("axis", -1))
    k = y[axis]
    return Cost(_prod(x) * max(1, math.ceil(math.log2(max(k, 1)))), 0)


# ---- pooling, resize -----------------------------------------------------------------------------------
def _pool(c: _Call, per_window_elem: int, per_out: int, channels_last: bool = False) -> Cost | None:
    """Windowed pooling: each output reads ∏kernel inputs (padding included, as the kernels do)."""
    x = c.in_shape(0)
    kernel = c.attr("kernel_shape")
    if x is None or not kernel:
        return None
    k = len(kernel)
    out = c.out_shape(0)
    first = 1 if channels_last or int(c.attr("channels_last", 0)) else 2
    in_sp = x[first:first + k]
    if out is not None and len(out) >= 2 + k:
        spatial = tuple(out[first:first + k])
    elif len(in_sp) == k:
        spatial = conv_output_spatial(in_sp, kernel, c.attr("strides"), c.attr("pads"), c.attr("dilations"),
                                      c.attr("auto_pad", "NOTSET"), bool(c.attr("ceil_mode", 0)))
    else:
        return None
    channels = x[-1] if first == 1 else x[1]
    out_n = x[0] * channels * _prod(spatial)
    return Cost(out_n * (_prod(kernel) * per_window_elem + per_out), 0)


def _lp_pool(c: _Call) -> Cost | None:
    p = int(c.attr("p", 2))
    per_elem = 2 if p in (1, 2) else T + 1  # |x|/x² and accumulate, or pow and accumulate
    return _pool(c, per_elem, T)  # one root per output


def _global_pool(c: _Call, per_in: int, per_out: int) -> Cost | None:
    x = c.in_shape(0)
    if x is None or len(x) < 2:
        return None
    n_in = _prod(x)
    n_out = x[0] * (x[-1] if int(c.attr("channels_last", 0)) else x[1])
    return Cost(n_in * per_in + n_out * per_out, 0)


def _interp_per_output(mode: str, resized_dims: int) -> int:
    """Resize FLOPs per output element: nearest rounds one source coordinate, (bi/tri)linear blends 2^d
    taps and cubic 4^d taps (a multiply-add each), plus one weight computation per resized dim."""
    if resized_dims == 0:
        return 0
    if mode == "nearest":
        return resized_dims
    taps = (4 if mode == "cubic" else 2) ** resized_dims
    return 2 * taps + 2 * resized_dims


def _resize(c: _Call) -> Cost | None:
    x, y = c.in_shape(0), c.out_shape(0)
    if x is None or y is None or len(x) != len(y):
        return None
    resized = sum(1 for a, b in zip(x, y, strict=True) if a != b)
    return Cost(_prod(y) * _interp_per_output(c.attr("mode", "nearest"), resized), 0)


def _nchwc_upsample(c: _Call) -> Cost | None:
    """NCHWc Upsample: integer ``scales``, one per input dimension."""
    x = c.in_shape(0)
    scales = c.attr("scales")
    if x is None or not scales or len(scales) != len(x):
        return None
    out_n = _prod(x) * _prod(scales)
    resized = sum(1 for s in scales if int(s) != 1)
    return Cost(out_n * _interp_per_output(c.attr("mode", "nearest"), resized), 0)


def _roi_align(c: _Call) -> Cost | None:
    """Bilinear sample (4 taps, ~10 FLOPs) per sampling point and one average per output; an adaptive
    sampling ratio (0) depends on the box sizes, so 2×2 points per bin are assumed."""
    ratio = int(c.attr("sampling_ratio", 0)) or 2
    return _per_output_elem(ratio * ratio * 11 + 1, c)


# ---- recurrent cells -----------------------------------------------------------------------------------
#: per hidden unit and time step, besides the matrix products: LSTM sums x- and h-gate parts (4), three
#: sigmoid gates, two tanh, c = f·c + i·g (3) and h = o·tanh(c) (1); GRU: 3 gate sums, two sigmoid, one
#: tanh, the reset product (1) and h = (1-z)·h' + z·h (4); RNN: one gate sum and one tanh.
_RNN_GATES = {
    "LSTM": (4, 4 + 3 * SIGMOID + 2 * T + 4),
    "GRU": (3, 3 + 2 * SIGMOID + T + 5),
    "RNN": (1, 1 + T),
}


def _recurrent(c: _Call) -> Cost | None:
    """MACs = directions · seq · batch · gates·H · (input + H); bias adds and gate arithmetic are FLOPs."""
    x, w, r = c.in_shape(0), c.in_shape(1), c.in_shape(2)
    if x is None or w is None or r is None or len(x) != 3 or len(w) != 3:
        return None
    gates, per_hidden = _RNN_GATES[c.op_type]
    seq, batch = (x[1], x[0]) if int(c.attr("layout", 0)) else (x[0], x[1])
    dirs, gh, inp = w
    hidden = int(c.attr("hidden_size", gh // gates))
    steps = dirs * seq * batch
    macs = steps * gates * hidden * (inp + hidden)
    flops = 2 * macs + steps * hidden * per_hidden
    if c.has(3):
        flops += steps * 2 * gates * hidden  # input and recurrence biases
    if c.op_type == "LSTM" and c.has(7):
        flops += steps * 3 * hidden * 2  # peepholes
    return Cost(flops, macs)


# ---- attention -----------------------------------------------------------------------------------------
def _attention_core(score_rows: int, q_numel: int, ctx_numel: int, total_len: int, masked: bool) -> Cost:
    """Q·Kᵀ (q_numel · T MACs) and P·V (ctx_numel · T MACs), plus scale, optional mask add and softmax over
    ``score_rows`` rows (batch · heads · query length) of length T."""
    macs = (q_numel + ctx_numel) * total_len
    scores = score_rows * total_len
    return Cost(2 * macs + scores * (1 + (1 if masked else 0) + SOFTMAX), macs)


def _ms_attention(c: _Call, w_idx: int = 1, bias_idx: int = 2, past_idx: int = 4,
                  mask_idxs: tuple[int, ...] = (3, 5)) -> Cost | None:
    """ORT Attention: QKV projection of input [B, S, D_in] with W [D_in, Dq+Dk+Dv], then attention over
    T = past + S keys with ``num_heads`` heads."""
    x, w = c.in_shape(0), c.in_shape(w_idx)
    if x is None or w is None or len(x) != 3 or len(w) != 2:
        return None
    b, s, d_in = x
    sizes = c.attr("qkv_hidden_sizes")
    dq, dk, dv = (int(v) for v in sizes) if sizes else (w[1] // 3,) * 3
    heads = int(c.attr("num_heads", 1))
    past = c.in_shape(past_idx)
    total = s + (past[3] if past is not None and len(past) == 5 else 0)
    proj_macs = b * s * d_in * (dq + dk + dv)
    proj = Cost(2 * proj_macs + (b * s * (dq + dk + dv) if c.has(bias_idx) else 0), proj_macs)
    masked = any(c.has(i) for i in mask_idxs)
    return proj + _attention_core(b * heads * s, b * s * dq, b * s * dv, total, masked)


def _qattention(c: _Call) -> Cost | None:
    cost = _ms_attention(c, w_idx=1, bias_idx=2, past_idx=8, mask_idxs=(5,))
    x = c.in_shape(0)
    if cost is None or x is None:
        return None
    return cost + Cost(_prod(x) * 2, 0)  # dequantise the int32 projection (scale products folded)


def _mha(c: _Call) -> Cost | None:
    """ORT MultiHeadAttention (projections done outside): Q [B,S,D] or packed QKV [B,S,N,3,H]; K [B,L,D],
    [B,N,L,H] or packed KV [B,L,N,2,H]; optional past_key [B,N,P,H]."""
    q = c.in_shape(0)
    heads = int(c.attr("num_heads", 1))
    if q is None:
        return None
    if len(q) == 5:  # packed QKV
        b, s, n, _, h = q
        dq = dv = n * h
        kv_len = s
    elif len(q) == 3:
        b, s, dq = q
        k, v = c.in_shape(1), c.in_shape(2)
        if k is None:
            return None
        kv_len = k[1] if len(k) in (3, 5) else k[2]
        if len(k) == 5:
            dv = k[2] * k[4]
        elif v is not None:
            dv = v[2] if len(v) == 3 else v[1] * v[3]
        else:
            dv = dq
    else:
        return None
    present = c.out_shape(1)
    if present is not None and len(present) == 4:
        total = present[2]
    else:
        past = c.in_shape(6)
        total = kv_len + (past[2] if past is not None and len(past) == 4 else 0)
    bias = (b * s * dq + b * kv_len * (dq + dv)) if c.has(3) else 0
    masked = c.has(4) or c.has(5)
    return Cost(bias, 0) + _attention_core(b * heads * s, b * s * dq, b * s * dv, total, masked)


def _gqa(c: _Call) -> Cost | None:
    """ORT GroupQueryAttention: query [B,S,N·H] (or packed QKV), key/value with fewer heads, optional
    rotary embedding; the key length T is the present_key's length (past + new)."""
    q = c.in_shape(0)
    heads = int(c.attr("num_heads", 1))
    kv_heads = int(c.attr("kv_num_heads", heads))
    if q is None or len(q) != 3:
        return None
    b, s, d = q
    head = d // (heads + 2 * kv_heads) if not c.has(1) else d // heads
    present = c.out_shape(1)
    past = c.in_shape(3)
    if present is not None and len(present) == 4:
        total = present[2]
    elif past is not None and len(past) == 4:
        total = past[2] + s
    else:
        total = s
    q_n = b * s * heads * head
    cost = _attention_core(b * heads * s, q_n, q_n, total, masked=True)
    if int(c.attr("do_rotary", 0)):
        cost = cost + Cost(3 * b * s * (heads + kv_heads) * head, 0)
    return cost


def _onnx_attention(c: _Call) -> Cost | None:
    """ONNX Attention (opset 23): Q [B,Nq,S,H] or [B,S,Nq·H]; K [B,Nkv,L,H] or [B,L,Nkv·H]; past_key."""
    q, k, v = c.in_shape(0), c.in_shape(1), c.in_shape(2)
    if q is None or k is None or v is None:
        return None
    if len(q) == 4:
        b, heads, s, _ = q
        kv_len = k[2]
        ctx = b * heads * s * v[3]
    elif len(q) == 3:
        b, s, _ = q
        heads = int(c.attr("q_num_heads", 1))
        kv_heads = int(c.attr("kv_num_heads", heads))
        kv_len = k[1]
        ctx = b * s * heads * (v[2] // kv_heads)
    else:
        return None
    past = c.in_shape(4)
    present = c.out_shape(1)
    if present is not None and len(present) == 4:
        total = present[2]
    else:
        total = kv_len + (past[2] if past is not None and len(past) == 4 else 0)
    masked = c.has(3) or bool(c.attr("is_causal", 0))
    return _attention_core(b * heads * s, _prod(q), ctx, total, masked)


def _embed_layer_norm(c: _Call) -> Cost | None:
    """ORT EmbedLayerNormalization: three gathers (free), word + position (+ segment) adds, LayerNorm,
    and the mask-index reduction over [B, S]."""
    ids, word = c.in_shape(0), c.in_shape(2)
    if ids is None or word is None or len(word) != 2:
        return None
    n = _prod(ids) * word[1]
    adds = 2 if c.has(1) and c.has(4) else 1
    mask = _prod(ids) if c.has(7) else 0
    return Cost(n * (adds + NORM_CORE + 2) + _prod(ids) * NORM_ROW + mask, 0)


# ---- quantisation --------------------------------------------------------------------------------------
def _qlinear_elementwise(op_flops: int, binary: bool, c: _Call) -> Cost | None:
    """QLinearAdd / QLinearMul (B at input 3) and unary QLinearSigmoid / QLinearLeakyRelu: dequantise each
    operand (2 FLOPs), apply the op, requantise the result."""
    n = _numel(c.out_shape(0))
    if n is None:
        shapes = [c.in_shape(0)] + ([c.in_shape(3)] if binary else [])
        n = _numel(broadcast_shapes(*shapes))
    if n is None:
        return None
    return Cost(n * (2 * (2 if binary else 1) + op_flops + REQUANT), 0)


def _matmul_to_float(c: _Call, bias_idx: int, quantise_a: bool) -> Cost | None:
    """Integer matmul followed by a float rescale (and optional bias); DynamicQuantizeMatMul also
    quantises A on the fly (min/max scan + quantise, 6 FLOPs per element)."""
    cost = _matmul(c, per_out=1 + (1 if c.has(bias_idx) else 0))
    a = c.in_shape(0)
    if cost is None or a is None:
        return None
    return cost + Cost(6 * _prod(a) if quantise_a else 0, 0)


# ---- registry ------------------------------------------------------------------------------------------
_REGISTRY: dict[tuple[str, str], CostFn] = {}


def _register(domain: str, names: Iterable[str], fn: CostFn) -> None:
    for name in names:
        _REGISTRY[(domain, name)] = fn


#: data movement, shape computation, constants and inference-time no-ops: 0 FLOPs by convention
DATA_MOVEMENT_OPS: tuple[str, ...] = (
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherND", "GatherElements", "Squeeze",
    "Unsqueeze", "Flatten", "Expand", "Pad", "Identity", "Cast", "CastLike", "Shape", "Size", "Constant",
    "ConstantOfShape", "Tile", "ScatterND", "ScatterElements", "Scatter", "Range", "DepthToSpace",
    "SpaceToDepth", "OneHot", "Compress", "ReverseSequence", "EyeLike", "Dropout", "Optional",
    "OptionalGetElement", "OptionalHasElement", "SequenceConstruct", "SequenceAt", "SequenceEmpty",
    "SequenceInsert", "SequenceErase", "SequenceLength", "SplitToSequence", "ConcatFromSequence", "BitCast",
    "CenterCropPad", "TensorScatter", "MaxUnpool",
)
_register("", DATA_MOVEMENT_OPS, _zero)
_register(MS_DOMAIN, ("Range", "ExpandDims"), _zero)
_register(NCHWC_DOMAIN, ("ReorderInput", "ReorderOutput"), _zero)

for _name, _per in ELEMENTWISE_FLOPS.items():
    _register("", (_name,), partial(_elementwise, _per))
_register("", ("Gelu",), _gelu)
for _name, _per in MS_ELEMENTWISE_FLOPS.items():
    _register(MS_DOMAIN, (_name,), partial(_elementwise, _per))
_register(MS_DOMAIN, ("FastGelu",), _fast_gelu)
_register("", ("Sum", "Max", "Min"), partial(_variadic, 0))
_register("", ("Mean",), partial(_variadic, 1))
_register("", ("Trilu",), partial(_per_output_elem, 1))  # a select per element (keep or zero)
_register("", ("RotaryEmbedding",), partial(_per_input_elem, 3))  # x·cos + rotate_half(x)·sin
_register("", ("SwiGLU",), partial(_per_output_elem, SIGMOID + 2))  # silu(a) · b per output element
_register("", ("NonZero",), partial(_per_input_elem, 1))  # one test per element
_register("", ("CumSum",), partial(_per_input_elem, 1))
_register("", ("CumProd",), partial(_per_input_elem, 1))
_register("", ("ArgMax", "ArgMin"), partial(_per_input_elem, 1))
_register("", ("Hardmax",), partial(_per_input_elem, 2))  # argmax scan + one-hot write
_register("", ("TopK",), _topk)

_register("", ("Conv",), _conv)
_register("", ("ConvInteger",), partial(_conv, b_idx=None))
_register("", ("QLinearConv",), partial(_conv, x_idx=0, w_idx=3, b_idx=8, requant=True))
_register("", ("ConvTranspose",), _conv_transpose)
_register("", ("Gemm",), _gemm)
_register("", ("MatMul", "MatMulInteger"), _matmul)
_register("", ("QLinearMatMul",), partial(_matmul, a_idx=0, b_idx=3, per_out=REQUANT))
_register("", ("Einsum",), _einsum)

_register("", ("MaxPool",), partial(_pool, per_window_elem=1, per_out=0))
_register("", ("AveragePool",), partial(_pool, per_window_elem=1, per_out=1))
_register("", ("LpPool",), _lp_pool)
_register("", ("GlobalAveragePool",), partial(_global_pool, per_in=1, per_out=1))
_register("", ("GlobalMaxPool",), partial(_global_pool, per_in=1, per_out=0))
_register("", ("GlobalLpPool",), partial(_global_pool, per_in=2, per_out=T))
_register("", ("Resize", "Upsample"), _resize)
_register("", ("RoiAlign",), _roi_align)

_register("", ("BatchNormalization",), _batch_norm)
_register("", ("LayerNormalization",), _layer_norm)
_register("", ("SimplifiedLayerNormalization", "RMSNormalization"),
          partial(_layer_norm, bias_idx=None, core=RMS_CORE))
_register("", ("InstanceNormalization", "GroupNormalization"), _instance_norm)
_register("", ("MeanVarianceNormalization",), partial(_per_input_elem, NORM_CORE))
_register("", ("LpNormalization",), _lp_norm)
_register("", ("LRN",), _lrn)
_register("", ("Softmax",), partial(_per_input_elem, SOFTMAX))
_register("", ("LogSoftmax",), _log_softmax)

_register("", ("ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"), partial(_reduce, 1, 0))
_register("", ("ReduceMean",), partial(_reduce, 1, 1))
_register("", ("ReduceL1", "ReduceSumSquare"), partial(_reduce, 2, 0))
_register("", ("ReduceL2",), partial(_reduce, 2, 1))
_register("", ("ReduceLogSum",), partial(_reduce, 1, T))
_register("", ("ReduceLogSumExp",), partial(_reduce, T + 1, T))

_register("", ("LSTM", "GRU", "RNN"), _recurrent)
_register("", ("Attention",), _onnx_attention)

_register("", ("QuantizeLinear",), partial(_per_input_elem, REQUANT))  # divide, round, add zp, saturate
_register("", ("DequantizeLinear",), partial(_per_input_elem, 2))  # subtract zp, multiply scale
_register("", ("DynamicQuantizeLinear",), partial(_per_input_elem, 2 + REQUANT))  # min/max scan + quantise

# ORT contrib ops
_register(MS_DOMAIN, ("FusedConv",), partial(_conv, sum_idx=3))
_register(MS_DOMAIN, ("NhwcConv",), partial(_conv, channels_last=True))
_register(MS_DOMAIN, ("NhwcFusedConv",), partial(_conv, sum_idx=3, channels_last=True))
_register(MS_DOMAIN, ("FusedGemm",), _gemm)
_register(MS_DOMAIN, ("FusedMatMul", "TransposeMatMul"), _fused_matmul)
_register(MS_DOMAIN, ("MatMulNBits",), _matmul_nbits)
_register(MS_DOMAIN, ("QGemm",), partial(_gemm, a_idx=0, b_idx=3, c_idx=6, y_scale_idx=7))
_register(MS_DOMAIN, ("MatMulIntegerToFloat",), partial(_matmul_to_float, bias_idx=6, quantise_a=False))
_register(MS_DOMAIN, ("DynamicQuantizeMatMul",), partial(_matmul_to_float, bias_idx=4, quantise_a=True))
_register(MS_DOMAIN, ("QLinearConv",), partial(_conv, x_idx=0, w_idx=3, b_idx=8, requant=True))
_register(MS_DOMAIN, ("QLinearAdd", "QLinearMul"), partial(_qlinear_elementwise, 1, True))
_register(MS_DOMAIN, ("QLinearSigmoid",), partial(_qlinear_elementwise, SIGMOID, False))
_register(MS_DOMAIN, ("QLinearLeakyRelu",), partial(_qlinear_elementwise, 2, False))
# integer sums, then one average + requantisation per output
_register(MS_DOMAIN, ("QLinearGlobalAveragePool",), partial(_global_pool, per_in=1, per_out=REQUANT + 1))
_register(MS_DOMAIN, ("QLinearAveragePool",), partial(_pool, per_window_elem=1, per_out=REQUANT + 1))
_register(MS_DOMAIN, ("QuantizeLinear",), partial(_per_input_elem, REQUANT))
_register(MS_DOMAIN, ("DequantizeLinear",), partial(_per_input_elem, 2))
_register(MS_DOMAIN, ("NhwcMaxPool",), partial(_pool, per_window_elem=1, per_out=0, channels_last=True))
_register(MS_DOMAIN, ("BiasDropout",), _bias_dropout)
_register(MS_DOMAIN, ("Attention",), _ms_attention)
_register(MS_DOMAIN, ("QAttention",), _qattention)
_register(MS_DOMAIN, ("MultiHeadAttention",), _mha)
_register(MS_DOMAIN, ("GroupQueryAttention",), _gqa)
_register(MS_DOMAIN, ("EmbedLayerNormalization",), _embed_layer_norm)
_register(MS_DOMAIN, ("SkipLayerNormalization",), _skip_layer_norm)
_register(MS_DOMAIN, ("SkipSimplifiedLayerNormalization",), partial(_skip_layer_norm, rms=True))
_register(MS_DOMAIN, ("SimplifiedLayerNormalization",), partial(_layer_norm, bias_idx=None, core=RMS_CORE))
_register(MS_DOMAIN, ("LayerNormalization",), _layer_norm)
_register(MS_DOMAIN, ("GroupNorm",), _instance_norm)

# ORT NCHWc layout ops (CPU, AVX2 / AVX-512 blocked channels)
_register(NCHWC_DOMAIN, ("Conv",), partial(_conv, sum_idx=3))
_register(NCHWC_DOMAIN, ("MaxPool",), partial(_pool, per_window_elem=1, per_out=0))
_register(NCHWC_DOMAIN, ("AveragePool",), partial(_pool, per_window_elem=1, per_out=1))
_register(NCHWC_DOMAIN, ("GlobalAveragePool",), partial(_global_pool, per_in=1, per_out=1))
_register(NCHWC_DOMAIN, ("GlobalMaxPool",), partial(_global_pool, per_in=1, per_out=0))
_register(NCHWC_DOMAIN, ("Upsample",), _nchwc_upsample)
del _name, _per


# ---- output shapes ONNX shape inference cannot give -----------------------------------------------------
def nchwc_block_size() -> int:
    """MLAS's NCHWc channel block on this CPU: 16 with AVX-512F, else 8 (the AVX2 kernels).

    ORT pads a reordered tensor's channel count to this block; only ReorderInput's output shape depends on
    it. A model optimized on another machine carries that machine's block in its weight shapes.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return 16 if "avx512f" in line.split() else 8
    except OSError:
        pass
    return 8


def _nchwc_shapes(c: _Call, block: int) -> tuple[int, ...] | None:
    """Output shape of an NCHWc op, following ORT's schema shape-inference functions (nchwc_schema_defs):
    NCHWc tensors are rank-4 logical tensors [N, C padded to the block, H, W]."""
    x = c.in_shape(0)
    if x is None or len(x) < 2:
        return None
    op = c.op_type
    if op == "ReorderInput":
        last = bool(int(c.attr("channels_last", 0)))
        ch = x[-1] if last else x[1]
        spatial = x[1:-1] if last else x[2:]
        return (x[0], -(-ch // block) * block, *spatial)
    if op == "ReorderOutput":
        ch = int(c.attr("channels", 0))
        if ch <= 0:
            return None
        return (x[0], *x[2:], ch) if int(c.attr("channels_last", 0)) else (x[0], ch, *x[2:])
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        return (x[0], x[1], *([1] * (len(x) - 2)))
    if op == "Upsample":
        scales = c.attr("scales")
        if not scales or len(scales) != len(x):
            return None
        return tuple(d * int(s) for d, s in zip(x, scales, strict=True))
    if op == "Conv":
        w = c.in_shape(1)
        if w is None or len(w) != len(x):
            return None
        kernel, channels = c.attr("kernel_shape") or list(w[2:]), w[0]
        ceil_mode = False
    elif op in ("MaxPool", "AveragePool"):
        kernel, channels = c.attr("kernel_shape"), x[1]
        ceil_mode = bool(int(c.attr("ceil_mode", 0)))
        if not kernel:
            return None
    else:
        return None
    spatial = conv_output_spatial(x[2:], kernel, c.attr("strides"), c.attr("pads"), c.attr("dilations"),
                                  c.attr("auto_pad", "NOTSET"), ceil_mode)
    return (x[0], channels, *spatial)


def infer_output_shapes(
    op_type: str,
    domain: str,
    attrs: dict[str, Any],
    inputs: list[TensorInfo],
    block_size: int | None = None,
) -> list[tuple[int, ...] | None] | None:
    """Output shapes of ORT's NCHWc ops (``com.microsoft.nchwc``), which ONNX shape inference and ORT's
    symbolic shape inference both leave unknown; None for any other op.

    The graph builder calls it, in topological order, for nodes whose outputs have no shape, so that the
    costs of an ORT-optimized CPU graph do not collapse to "unknown" after its first reordered tensor.
    ``block_size`` defaults to :func:`nchwc_block_size` (the machine that optimized the model).
    """
    if domain != NCHWC_DOMAIN:
        return None
    call = _Call(op_type, domain, dict(attrs), list(inputs), [])
    try:
        shape = _nchwc_shapes(call, block_size or nchwc_block_size())
    except (IndexError, ValueError, TypeError, ZeroDivisionError):
        return None
    return None if shape is None else [shape]


def _norm_domain(domain: str) -> str:
    return "" if domain in DEFAULT_DOMAINS else domain


def has_formula(op_type: str, domain: str = "") -> bool:
    """Whether :func:`node_cost` knows this op (it may still return None for unknown shapes)."""
    return (_norm_domain(domain), op_type) in _REGISTRY


def supported_ops() -> list[str]:
    """Qualified op types (``domain::Op`` outside the default domain) that have a cost formula."""
    return sorted(op if not dom else f"{dom}::{op}" for dom, op in _REGISTRY)


def node_cost(
    op_type: str,
    domain: str,
    attrs: dict[str, Any],
    inputs: list[TensorInfo],
    outputs: list[TensorInfo],
) -> Cost | None:
    """Static FLOPs / MACs of one node.

    Returns None when the op has no formula, when a shape the formula needs is unknown, or when the
    attributes / shapes are inconsistent (a rank the op cannot have) — the caller records a warning then,
    because a silent 0 would understate the model's cost.
    """
    fn = _REGISTRY.get((_norm_domain(domain), op_type))
    if fn is None:
        return None
    call = _Call(op_type, _norm_domain(domain), dict(attrs), list(inputs), list(outputs))
    try:
        return fn(call)
    except (IndexError, ValueError, TypeError, ZeroDivisionError):
        return None
