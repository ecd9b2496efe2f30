"""Which ops archbench counts, in which figure, with which formula.

Every op a counted pass runs (at torch's dispatch level, so any eager model, meta tensors included)
falls in exactly one bucket:

* ``macs`` — multiply-accumulates of convolutions (any groups, transposed), matrix products (mm, addmm,
  bmm, baddbmm: linear, matmul and einsum run as these) and attention (every SDPA kernel, the CPU
  flash kernel and ``nn.MultiheadAttention``'s fused fast path included): torchvision's ``_ops``
  convention. torch's own formulas (``torch.utils.flop_counter``, halved: torch counts 2 FLOPs per MAC),
  archbench's where torch has none or is wrong (see :data:`ARCHBENCH_FORMULAS`), and user formulas.
  Recurrent layers (``nn.LSTM``/``GRU``/``RNN``) count the MACs of their matrix products: decomposed
  into ``addmm``/``mm`` (CPU with ``proj_size``, GRU, RNN), or in one fused kernel (MKLDNN's
  ``mkldnn_rnn_layer`` on CPU, cuDNN's ``_cudnn_rnn``, MIOpen's ``miopen_rnn``; see :data:`RNN_FORMULAS`).
* ``norm_pool`` — normalisation, adaptive average pooling and upsampling with fvcore's formulas (in
  MACs; BatchNorm as at inference; upsampling one MAC per interpolation point: nearest 1, linear 2,
  bilinear 4, bicubic 16, trilinear 8 per output element). ``macs`` + ``norm_pool`` is the convention of
  fvcore, timm's ``infer_gmacs`` and the ConvNeXt paper. A ``mean`` of a square (RMSNorm written as
  ``x.pow(2).mean(-1)``) is listed as ``mean (rms_norm)``: normalisation, not pooling.
* ``other`` — activations, elementwise ops, reductions, softmax, max/average pooling and the backward
  of these: operations, one per output element (softmax 3, pooling one per window element, a reduction
  one per input element, a cumulative sum or a scatter-add one per element added, ``col2im`` one per
  column element). The gate arithmetic of a fused recurrent kernel is listed as ``<kernel> (gates)``.
* ``free`` — ops that do no arithmetic (views, reshapes, copies, fills, allocations, random draws,
  padding by reflection or replication, ``im2col``, a ``scatter`` without reduction).
* anything else is *uncounted*: listed with how often it ran, never counted as zero silently.

Users add formulas with :func:`register_flop_formula` or through the entry-point group
``archbench.flop_formulas`` (an entry point names a ``{op: formula}`` mapping, or a callable returning
one); those ops count in ``macs`` unless registered with another ``kind``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from archbench.errors import ArchbenchError

aten = torch.ops.aten

MACS, NORM_POOL, OTHER, FREE = "macs", "norm_pool", "other", "free"
KINDS = (MACS, NORM_POOL, OTHER)
ENTRY_POINT_GROUP = "archbench.flop_formulas"


class FormulaError(ArchbenchError):
    """A formula that cannot be registered (unknown op, registered twice, bad kind)."""


@dataclass(frozen=True)
class Formula:
    """How one op is counted: ``fn(*args, out_shape=..., **kwargs)`` with tensors replaced by their
    shapes, returning MACs (``macs``, ``norm_pool``) or operations (``other``); ``source`` says whose."""

    kind: str
    fn: Callable[..., int]
    source: str
    raw: bool = False  # torch's formulas take the tensors themselves and ``out_val``
    # a fused kernel's second count in another bucket, listed as "<op> <suffix>": (suffix, formula)
    also: tuple[str, Formula] | None = None


# ------------------------------------------------------------------------------- shape formulas


def _numel(shape) -> int:
    return math.prod(shape) if shape is not None else 0


def _first_shape(value):
    """The shape of the first tensor in an op's output (a tuple of shapes, or a shape)."""
    if isinstance(value, torch.Size):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_shape(item)
            if found is not None:
                return found
    return None


def torch_macs(torch_formula: Callable[..., int]) -> Callable[..., int]:
    """One of torch's FLOP formulas (tensors and ``out_val``) in MACs."""
    return lambda *args, out_val=None, **kwargs: torch_formula(*args, out_val=out_val, **kwargs) // 2


def conv_backward_macs(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                       _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """MACs of ``aten.convolution_backward``, correct for grouped and depthwise convolutions.

    torch's formula (torch <= 2.14) computes the weight-gradient term as a dense convolution of the input
    with the output gradient, ignoring ``groups``: ``groups``x too high. Each weight element meets each
    position it slid over once per sample: N * prod(weight) * prod(spatial of the output gradient; of
    the input for a transposed convolution), the forward count. The input-gradient term is torch's."""
    from torch.utils.flop_counter import conv_flop_count

    macs = 0
    if output_mask[0]:
        macs += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed) // 2
    if output_mask[1]:
        slid_over = x_shape[2:] if transposed else grad_out_shape[2:]
        macs += x_shape[0] * math.prod(w_shape) * math.prod(slid_over)
    return macs


def attention_macs(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """QKᵀ and AV: B·H·Lq·Lk·(E + Ev) MACs (CPU flash kernel; torch's formula for the others)."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape) // 2


def attention_backward_macs(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape) // 2


def multi_head_attention_macs(query_shape, key_shape, value_shape, embed_dim, num_heads, *args,
                              out_shape=None, **kwargs) -> int:
    """``aten._native_multi_head_attention`` (``nn.MultiheadAttention``'s fast path, batch first):
    the q, k, v and output projections and the attention products."""
    batch, lq, lk = query_shape[0], query_shape[-2], key_shape[-2]
    projections = batch * (2 * lq + 2 * lk) * embed_dim * embed_dim
    return projections + 2 * batch * lq * lk * embed_dim


# ---------------------------------------------------------------------------------- recurrent layers
#
# Convention (one layer, one direction, per token = per time step and sample): the MACs of its matrix
# products, 4H x I + 4H x R (+ P x H with proj_size P) for an LSTM (input size I, hidden size H, recurrent
# input R = P or H), 3H for a GRU, 1H for an RNN: the sum of the elements of its weight matrices (biases are
# not MACs, as for a Linear). That is exactly what the decomposed CPU path counts with torch's addmm/mm
# formulas. The gate arithmetic is "other", one operation per element as for any elementwise op:
# LSTM 13 per hidden unit (4H to add the recurrent product, 3 sigmoids, 2 tanh, 3 multiplications, 1
# addition), GRU 10, RNN 2; the CPU decomposition runs exactly these. Backward: each matrix product's input
# and weight gradients (2 x the forward MACs; a fused kernel computes the input gradient of the first layer
# too, the decomposed path skips it), and the gates' backward, one operation per forward one.
GATE_OPS = {0: 2, 1: 2, 2: 13, 3: 10}  # cuDNN/MIOpen/oneDNN mode: RNN_RELU, RNN_TANH, LSTM, GRU
_FUSED_CELL_OPS = {"lstm": (13, 8), "gru": (10, 6)}  # per hidden unit: gate ops, and the 2 bias additions


def _tokens(input_shape) -> int:
    """Time steps x samples of a recurrent layer's input (T, B, I), (B, T, I) or packed (sum of lengths, I)."""
    return math.prod(input_shape[:-1])


def _matrix_elements(weight_shapes) -> int:
    return sum(math.prod(w) for w in weight_shapes if w is not None and len(w) == 2)


def _rnn_gates(tokens: int, mode: int, hidden_size: int, layers_directions: int = 1) -> int:
    return tokens * GATE_OPS[mode] * hidden_size * layers_directions


def mkldnn_rnn_layer_macs(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    """``aten.mkldnn_rnn_layer`` (oneDNN, CPU): one layer, one direction."""
    return _tokens(input_shape) * _matrix_elements((w_ih, w_hh))


def mkldnn_rnn_layer_gates(input_shape, w_ih, w_hh, b_ih, b_hh, hx, cx, reverse, batch_sizes, mode, hidden_size,
                           *args, out_shape=None, **kwargs) -> int:
    return _rnn_gates(_tokens(input_shape), mode, hidden_size)


def mkldnn_rnn_layer_backward_macs(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    """Input (and recurrent) gradients and weight gradients: 2 x the forward."""
    return 2 * _tokens(input_shape) * _matrix_elements((w_ih, w_hh))


def mkldnn_rnn_layer_backward_gates(input_shape, w1, w2, w3, w4, hx, cx, output, hy, cy, grad_output, grad_hy,
                                    grad_cy, reverse, mode, hidden_size, *args, out_shape=None, **kwargs) -> int:
    return _rnn_gates(_tokens(input_shape), mode, hidden_size)


def _layers_directions(num_layers: int, bidirectional: bool) -> int:
    return num_layers * (2 if bidirectional else 1)


def cudnn_rnn_macs(input_shape, weights, *args, out_shape=None, **kwargs) -> int:
    """``aten._cudnn_rnn`` / ``aten.miopen_rnn``: every layer and direction (flat weight list)."""
    return _tokens(input_shape) * _matrix_elements(weights)


def cudnn_rnn_gates(input_shape, weights, stride0, weight_buf, hx, cx, mode, hidden_size, proj_size, num_layers,
                    batch_first, dropout, train, bidirectional, *args, out_shape=None, **kwargs) -> int:
    return _rnn_gates(_tokens(input_shape), mode, hidden_size, _layers_directions(num_layers, bidirectional))


def miopen_rnn_gates(input_shape, weights, stride0, hx, cx, mode, hidden_size, num_layers, batch_first, dropout,
                     train, bidirectional, *args, out_shape=None, **kwargs) -> int:
    return _rnn_gates(_tokens(input_shape), mode, hidden_size, _layers_directions(num_layers, bidirectional))


def cudnn_rnn_backward_macs(input_shape, weights, *args, out_shape=None, **kwargs) -> int:
    """The data gradients always run (the weight gradients need them); the weight gradients if asked for
    (``output_mask[3]``)."""
    output_mask = args[-1]
    return (1 + bool(output_mask[3])) * _tokens(input_shape) * _matrix_elements(weights)


def cudnn_rnn_backward_gates(input_shape, weights, stride0, weight_buf, hx, cx, output, grad_output, grad_hy,
                             grad_cy, mode, hidden_size, proj_size, num_layers, batch_first, dropout, train,
                             bidirectional, *args, out_shape=None, **kwargs) -> int:
    return _rnn_gates(_tokens(input_shape), mode, hidden_size, _layers_directions(num_layers, bidirectional))


def miopen_rnn_backward_gates(input_shape, weights, stride0, weight_buf, hx, cx, output, grad_output, grad_hy,
                              grad_cy, mode, hidden_size, num_layers, batch_first, dropout, train, bidirectional,
                              *args, out_shape=None, **kwargs) -> int:
    return _rnn_gates(_tokens(input_shape), mode, hidden_size, _layers_directions(num_layers, bidirectional))


def _fused_cell(kind: str) -> Callable[..., int]:
    """``_thnn_fused_lstm_cell`` / ``_thnn_fused_gru_cell`` (CUDA LSTMCell/GRUCell): the gates of products
    computed before (by ``mm``), and the biases they add."""
    gate_ops, bias_ops = _FUSED_CELL_OPS[kind]

    def formula(input_gates, hidden_gates, state, input_bias=None, hidden_bias=None, out_shape=None, **kwargs) -> int:
        units = _numel(state)
        return units * (gate_ops + (bias_ops if input_bias is not None else 0))
    return formula


def _lstm_cell_backward(grad_hy, grad_cy, cx, cy, workspace, has_bias, out_shape=None, **kwargs) -> int:
    return _numel(cx) * _FUSED_CELL_OPS["lstm"][0]


def _fused(macs: Callable[..., int], gates: Callable[..., int], whose: str) -> Formula:
    return Formula(MACS, macs, f"archbench ({whose})", also=("(gates)", Formula(OTHER, gates, f"archbench ({whose})")))


RNN_FORMULAS: dict[Any, Formula] = {
    aten.mkldnn_rnn_layer: _fused(mkldnn_rnn_layer_macs, mkldnn_rnn_layer_gates, "oneDNN RNN"),
    aten.mkldnn_rnn_layer_backward: _fused(mkldnn_rnn_layer_backward_macs, mkldnn_rnn_layer_backward_gates,
                                           "oneDNN RNN"),
    aten._cudnn_rnn: _fused(cudnn_rnn_macs, cudnn_rnn_gates, "cuDNN RNN"),
    aten._cudnn_rnn_backward: _fused(cudnn_rnn_backward_macs, cudnn_rnn_backward_gates, "cuDNN RNN"),
    aten.miopen_rnn: _fused(cudnn_rnn_macs, miopen_rnn_gates, "MIOpen RNN"),
    aten.miopen_rnn_backward: _fused(cudnn_rnn_backward_macs, miopen_rnn_backward_gates, "MIOpen RNN"),
    aten._thnn_fused_lstm_cell: Formula(OTHER, _fused_cell("lstm"), "archbench (fused LSTM cell)"),
    aten._thnn_fused_gru_cell: Formula(OTHER, _fused_cell("gru"), "archbench (fused GRU cell)"),
    aten._thnn_fused_lstm_cell_backward_impl: Formula(OTHER, _lstm_cell_backward, "archbench (fused LSTM cell)"),
}


def _batch_norm(x_shape, weight_shape, *args, out_shape=None, **kwargs) -> int:
    return _numel(x_shape) * (2 if weight_shape is not None else 1)  # fvcore's inference formula


def _layer_or_group_norm(affine_index: int) -> Callable[..., int]:
    def formula(*args, out_shape=None, **kwargs) -> int:
        return _numel(args[0]) * (5 if args[affine_index] is not None else 4)  # fvcore's norm formula
    return formula


def input_elements(x_shape, *args, out_shape=None, **kwargs) -> int:
    return _numel(x_shape)


def output_elements(factor: int) -> Callable[..., int]:
    return lambda *args, out_shape=None, **kwargs: factor * _numel(_first_shape(out_shape))


def _pool_window(x_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    return _numel(_first_shape(out_shape)) * math.prod(kernel_size if len(kernel_size) > 1 else kernel_size * 2)


def _interpolation(points: int) -> Callable[..., int]:
    """Upsampling: one MAC per interpolation point of each output element (fvcore's rule: nearest 1,
    bilinear 4; by the same rule linear 2, bicubic 16, trilinear 8)."""
    return output_elements(points)


def _elements_of(index: int) -> Callable[..., int]:
    """One operation per element of the ``index``-th argument (a scatter-add: per index or source element)."""
    return lambda *args, out_shape=None, **kwargs: _numel(args[index])


ARCHBENCH_FORMULAS: dict[Any, Formula] = {
    aten.convolution_backward: Formula(MACS, conv_backward_macs, "archbench (torch ignores groups)"),
    aten._scaled_dot_product_flash_attention_for_cpu: Formula(MACS, attention_macs, "archbench (torch has none)"),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: Formula(
        MACS, attention_backward_macs, "archbench (torch has none)"),
    aten._native_multi_head_attention: Formula(MACS, multi_head_attention_macs, "archbench (torch has none)"),
}
FVCORE_FORMULAS: dict[Any, Formula] = {
    **{op: Formula(NORM_POOL, _batch_norm, "fvcore") for op in (
        aten._native_batch_norm_legit_no_training, aten._native_batch_norm_legit, aten.native_batch_norm,
        aten.cudnn_batch_norm, aten.miopen_batch_norm)},
    aten.native_layer_norm: Formula(NORM_POOL, _layer_or_group_norm(2), "fvcore"),
    aten.native_group_norm: Formula(NORM_POOL, _layer_or_group_norm(1), "fvcore"),
    aten._adaptive_avg_pool2d: Formula(NORM_POOL, input_elements, "fvcore"),
    aten._adaptive_avg_pool3d: Formula(NORM_POOL, input_elements, "fvcore"),
    # adaptive average pooling to 1x1 runs as mean over the spatial dimensions
    aten.mean: Formula(NORM_POOL, input_elements, "fvcore (adaptive_avg_pool2d)"),
    aten.upsample_nearest2d: Formula(NORM_POOL, output_elements(1), "fvcore"),
    aten.upsample_bilinear2d: Formula(NORM_POOL, output_elements(4), "fvcore"),
    **{op: Formula(NORM_POOL, _interpolation(points), "fvcore's rule (one per interpolation point)") for op, points in (
        (aten.upsample_nearest1d, 1), (aten.upsample_nearest3d, 1), (aten._upsample_nearest_exact1d, 1),
        (aten._upsample_nearest_exact2d, 1), (aten._upsample_nearest_exact3d, 1), (aten.upsample_linear1d, 2),
        (aten._upsample_bilinear2d_aa, 4), (aten.upsample_trilinear3d, 8), (aten.upsample_bicubic2d, 16),
        (aten._upsample_bicubic2d_aa, 16))},
}
CONVENTIONAL_FORMULAS: dict[Any, Formula] = {
    **{op: Formula(OTHER, output_elements(3), "conventional") for op in (
        aten._softmax, aten._log_softmax, aten._safe_softmax)},
    **{op: Formula(OTHER, _pool_window, "conventional") for op in (
        aten.max_pool2d_with_indices, aten.avg_pool2d, aten.max_pool2d, aten.max_pool3d_with_indices)},
    **{op: Formula(OTHER, output_elements(1), "conventional") for op in (
        aten.add, aten.add_, aten.sub, aten.sub_, aten.mul, aten.mul_, aten.div, aten.div_, aten.rsub,
        aten.native_dropout, aten.bernoulli_, aten.bernoulli, aten.addcmul, aten.addcdiv, aten.lerp,
        # activations torch does not tag pointwise
        aten.hardswish, aten.hardswish_, aten.hardsigmoid_, aten.hardtanh, aten.hardtanh_, aten.relu6,
        aten.leaky_relu_, aten.elu_, aten.mish_, aten.softplus, aten.glu, aten.prelu, aten._prelu_kernel,
        aten.clamp_, aten.clamp_min_, aten.clamp_max_)},
    # cheap arithmetic that is neither pointwise nor a reduction: one operation per element added
    **{op: Formula(OTHER, input_elements, "conventional") for op in (aten.cumsum, aten.cumsum_, aten.cumprod,
                                                                       aten.cumprod_, aten.col2im)},
    **{op: Formula(OTHER, _elements_of(2), "conventional") for op in (
        aten.scatter_add, aten.scatter_add_, aten.scatter_reduce, aten.scatter_reduce_)},
    **{op: Formula(OTHER, _elements_of(3), "conventional") for op in (aten.index_add, aten.index_add_)},
}
# scatter and scatter_ copy, except their overloads that reduce (add or multiply into the target)
OVERLOAD_FORMULAS: dict[Any, Formula] = {op: Formula(OTHER, _elements_of(2), "conventional") for op in (
    aten.scatter.reduce, aten.scatter.value_reduce, aten.scatter_.reduce, aten.scatter_.value_reduce)}
# Ops that move, view or allocate data and do no arithmetic.
FREE_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "expand_as", "clone", "copy_",
    "detach", "alias", "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros",
    "zeros_like", "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like", "fill_", "zero_", "fill",
    "as_strided", "as_strided_", "index_put", "_index_put_impl_", "slice", "select", "cat", "stack", "split",
    "split_with_sizes", "chunk", "unbind",
    "unsqueeze", "squeeze", "flatten", "unflatten", "_to_copy", "to", "contiguous", "lift_fresh", "arange",
    "narrow", "index_select", "select_backward", "slice_backward", "_reshape_alias", "constant_pad_nd",
    "pad", "scalar_tensor", "_local_scalar_dense", "sym_size", "sym_stride", "sym_numel", "is_same_size",
    "_has_compatible_shallow_copy_type", "randn", "rand", "randint", "normal_",
    "uniform_", "roll", "repeat", "index", "index_put_", "gather", "masked_fill_", "masked_fill",
    "set_", "resize_", "embedding", "_unsafe_index", "channel_shuffle", "pixel_shuffle",
    "unfold", "flip", "tril", "triu", "_pin_memory", "lift", "diagonal", "movedim", "tile", "embedding_dense_backward",
    # copies: patches into columns, padding by reflection or replication, scatter without reduction
    "im2col", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "scatter", "scatter_", "unsafe_split", "unsafe_split_with_sizes",
    "unsafe_chunk", "_cudnn_rnn_flatten_weight", "transpose_", "t_", "squeeze_", "unsqueeze_", "swapdims_",
})
