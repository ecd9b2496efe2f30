"""MACs in the published convention (torchvision's ``_ops``), attention counted on both passes,
user formulas for custom ops, layer rows that add up, and torch left untouched outside counting."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archbench
from archbench.catalog.registry import get_spec
from archbench.catalog.spec import ModelSpec
from archbench.costs.counting import count_forward
from archbench.costs.formula_registry import unregister_flop_formula
from archbench.costs.formulas import FormulaError
from archbench.costs.summary import summarize
from archbench.costs.summary_view import summary_markdown

# ------------------------------------------------------------------------------- published counts


def _classification_models() -> list[str]:
    import torchvision.models as tvm

    return tvm.list_models(module=tvm)


def _build_on_meta(name: str, crop: int) -> nn.Module:
    from torchvision.models import get_model

    kwargs = {"image_size": crop} if name.startswith("vit_") else {}  # ViT's position embedding fixes the size
    if name == "googlenet":
        kwargs["aux_logits"] = False  # its weights (and their num_params) come without the auxiliary heads
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = False  # their scipy-based init is slow (and warns); counts need no values
    try:
        with torch.device("meta"):
            return get_model(name, **kwargs)
    except NotImplementedError:  # RegNet computes its widths with .tolist(): no data on meta
        return get_model(name, **kwargs).to("meta")


@pytest.mark.slow
def test_every_torchvision_classification_model_matches_its_published_ops_and_params():
    """torchvision's ``_ops`` are GMACs of convolutions and matrix products (attention included), given to
    three decimals: within 0.5%, or within the published rounding (0.0005 G) for the smallest models."""
    from torchvision.models import get_model_weights

    misses = []
    for name in _classification_models():
        weights = get_model_weights(name).DEFAULT
        crop = weights.transforms().crop_size[0]
        model = _build_on_meta(name, crop)
        macs = count_forward(model, torch.empty(1, 3, crop, crop, device="meta")).total("macs")
        published = weights.meta["_ops"] * 1e9
        params = sum(p.numel() for p in model.parameters())
        if abs(macs - published) > max(0.005 * published, 0.0005e9) or params != weights.meta["num_params"]:
            misses.append((name, macs, published, params, weights.meta["num_params"]))
    assert not misses
    assert len(_classification_models()) >= 80  # ViTs, Swin, MaxViT, RegNets, ... all of them


# ------------------------------------------------------------------------------------- attention


class _Attention(nn.Module):
    """Attention only: a learned query attends over the input (keys = values = the input)."""

    def __init__(self, heads: int, length: int, dim: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, heads, length, dim))

    def forward(self, x):
        return F.scaled_dot_product_attention(self.query, x, x)


def test_sdpa_forward_and_backward_macs_by_hand_on_cpu():
    heads, length, dim = 2, 16, 8  # input 2x16x8 at batch 1: (batch, heads, length, dim)
    s = summarize(ModelSpec(name="sdpa", family="test", input=(heads, length, dim)), model=_Attention(heads, length, dim),
                  depth=0)
    product = heads * length * length * dim  # one Lq x Lk x E product per head
    assert s.stats.macs == 2 * product  # QKᵀ and AV
    # backward: scores recomputed (1), grad V and grad P (2), grad Q and grad K (2)
    assert s.stats.flops_backward == 2 * 5 * product
    assert "_scaled_dot_product_flash_attention_for_cpu" in s.coverage.macs_by_op  # torch has no formula for it
    assert not s.stats.uncounted_ops and not s.coverage.backward_uncounted_ops


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        tokens = x[:, 0]  # (batch, length, dim)
        return self.attention(tokens, tokens, tokens, need_weights=False)[0]


def test_multihead_attention_macs_by_hand_in_training_and_on_its_fast_path():
    length, dim, heads = 10, 16, 4
    model = _SelfAttention(dim, heads)
    projections, products = 4 * length * dim * dim, 2 * length * length * dim  # q, k, v, out; QKᵀ, AV
    s = summarize(ModelSpec(name="mha", family="test", input=(1, length, dim)), model=model, depth=0)
    assert s.stats.macs == projections + products
    # backward: in-projection weight gradient only (the input needs none), attention 5/2 of its forward,
    # out-projection input and weight gradients
    assert s.stats.flops_backward == 2 * (3 * length * dim * dim + 5 * length * length * dim + 2 * length * dim * dim)

    fast = count_forward(model, torch.randn(1, 1, length, dim))  # eval, no grad: the fused kernel
    assert set(fast.by_op("macs")) == {"_native_multi_head_attention"}
    assert fast.total("macs") == projections + products


@pytest.mark.slow
def test_vit_b_16_counts_attention_on_both_passes(cli):
    result = cli("summary", "vit_b_16", "--json", "--depth", "1")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["macs"] == pytest.approx(17.564e9, rel=0.005)
    assert any("attention" in op for op in data["macs_by_op"])
    assert any("attention" in op for op in data["backward_flops_by_op"])
    assert 1.9 < data["flops_backward"] / data["flops_forward"] < 2.1
    assert data["uncounted_ops"] == {} and data["backward_uncounted_ops"] == {}
    # fvcore misses exactly the attention products: 12 blocks x 2 x 197² x 768
    assert data["macs_with_norm"] - data["cross_check"]["fvcore_macs"] == 12 * 2 * 197**2 * 768
    assert "attention" in data["cross_check"]["note"]


@pytest.mark.slow
def test_resnet50_shows_both_totals_labelled(cli):
    result = cli("summary", "resnet50", "--depth", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    macs = next(line for line in lines if "forward MACs" in line)
    with_norm = next(line for line in lines if "MACs with norm" in line)
    assert "(4.089 G)" in macs and "torchvision _ops" in macs
    assert "(4.112 G)" in with_norm and "fvcore" in with_norm


# ------------------------------------------------------------------------------------- custom ops


@torch.library.custom_op("archbench_test::mix", mutates_args=())
def _mix(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x @ weight


@_mix.register_fake
def _(x, weight):
    return x.new_empty(x.shape[0], weight.shape[1])


def _mix_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    return grad @ weight.T, x.T @ grad


_mix.register_autograd(_mix_backward, setup_context=lambda ctx, inputs, output: ctx.save_for_backward(*inputs))


class _Mixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(12, 5))

    def forward(self, x):
        return _mix(x.flatten(1), self.weight)


def _mix_macs(x_shape, weight_shape, out_shape=None) -> int:
    return x_shape[0] * x_shape[1] * weight_shape[1]


def test_a_custom_op_is_uncounted_until_a_formula_is_registered():
    spec = ModelSpec(name="mixer", family="test", input=(3, 2, 2))
    before = summarize(spec, model=_Mixer(), depth=0)
    assert before.stats.macs == 0 and before.stats.uncounted_ops == {"archbench_test::mix": 1}

    archbench.register_flop_formula(torch.ops.archbench_test.mix, _mix_macs)
    try:
        with pytest.raises(FormulaError, match="already registered"):
            archbench.register_flop_formula("archbench_test::mix", _mix_macs)
        s = summarize(spec, model=_Mixer(), depth=0)
    finally:
        unregister_flop_formula(torch.ops.archbench_test.mix)
    assert s.stats.macs == 12 * 5 and s.stats.uncounted_ops == {}
    assert s.coverage.formulas["archbench_test::mix"].startswith("macs: user (")
    assert re.search(r"user formulas\*\*: archbench_test::mix \(user \(.*_mix_macs\)\)", summary_markdown(s))
    # its backward runs two plain matrix products (grad @ weight.T and x.T @ grad): torch's mm formula
    assert s.stats.flops_backward == 2 * 2 * (12 * 5)


_PLUGIN = """
import torch

@torch.library.custom_op("archbench_plugin::scale", mutates_args=())
def scale(x: torch.Tensor) -> torch.Tensor:
    return x * 2

def scale_macs(x_shape, out_shape=None):
    return 7 * x_shape[0]

FORMULAS = {"archbench_plugin::scale": scale_macs}
"""

_COUNT_WITH_PLUGIN = """
import torch, kernels_for_test
from archbench.costs.counting import count_forward

class Model(torch.nn.Module):
    def forward(self, x):
        return torch.ops.archbench_plugin.scale(x)

counts = count_forward(Model(), torch.ones(3, 2))
print(counts.total("macs"), counts.sources()["archbench_plugin::scale"][1])
"""


@pytest.mark.slow
def test_an_entry_point_package_brings_its_formulas(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "kernels_for_test.py").write_text(_PLUGIN)
    dist = tmp_path / "kernels_for_test-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kernels-for-test\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[archbench.flop_formulas]\nkernels = kernels_for_test:FORMULAS\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", _COUNT_WITH_PLUGIN], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(maxsplit=1) == ["21", "plugin kernels (kernels_for_test:FORMULAS)\n"]


# ---------------------------------------------------------------------------- grouped conv backward


@pytest.mark.slow
def test_resnext_50_backward_flops_are_unchanged():
    # counts only: on `meta` (no weights, no arithmetic), the same aten ops and shapes as on the CPU
    stats = summarize(get_spec("resnext-50"), input=(3, 32, 32), depth=0, device="meta", cross_check=False).stats
    assert stats.flops_backward == 3_000_139_776


# ------------------------------------------------------------------------------------ layer table


@pytest.mark.slow
def test_densenet121_layer_rows_add_up_to_the_total_with_its_own_forward_row():
    s = summarize(get_spec("densenet121"), depth=1, device="meta", cross_check=False)  # counts only: no arithmetic
    rows = {row.name: row for row in s.layers}
    assert rows["(self)"].macs_with_norm == 1024 * 7 * 7  # the final adaptive_avg_pool2d, in the model's forward
    assert sum(row.macs_with_norm for row in s.layers) == s.stats.macs_with_norm
    assert sum(row.macs for row in s.layers) == s.stats.macs
    assert s.stats.macs == pytest.approx(2.834e9, rel=0.001)


class _PoolingBlock(nn.Module):
    """A conv child plus pooling and a matrix product in the block's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1, bias=False)
        self.mix = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.conv(x), 1).flatten(1) @ self.mix


def test_own_forward_rows_make_every_level_add_up():
    model = nn.Sequential(_PoolingBlock(), nn.Linear(3, 2, bias=False))
    s = summarize(ModelSpec(name="blocks", family="test", input=(2, 5, 5)), model=model, depth=None)
    rows = {row.name: row for row in s.layers}
    assert [row.name for row in s.layers] == ["0", "0.conv", "0 (self)", "1"]
    conv, pool, mix, linear = 4 * 25 * 2, 4 * 25, 4 * 3, 3 * 2
    assert (rows["0 (self)"].macs, rows["0 (self)"].macs_with_norm, rows["0 (self)"].params) == (mix, mix + pool, 12)
    assert rows["0"].macs == rows["0.conv"].macs + rows["0 (self)"].macs == conv + mix
    assert rows["0"].macs_with_norm == conv + mix + pool
    assert s.stats.macs == conv + mix + linear and s.stats.macs_with_norm == s.stats.macs + pool


# --------------------------------------------------------------------------------- torch untouched


def test_torch_flop_counter_is_untouched_outside_counting():
    from torch.utils.flop_counter import (
        FlopCounterMode,
        _FlopCounterMode,
        flop_registry,
    )

    registry = dict(flop_registry)
    dispatch = _FlopCounterMode.__dict__["__torch_dispatch__"]
    summarize(ModelSpec(name="grouped", family="test", input=(4, 5, 5)),
              model=nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, groups=4)), depth=None)
    assert dict(flop_registry) == registry
    assert _FlopCounterMode.__dict__["__torch_dispatch__"] is dispatch
    assert not hasattr(getattr(dispatch, "__wrapped__", None), "__dynamo_disable")
    assert not nn.modules.module._global_forward_hooks and not nn.modules.module._global_forward_pre_hooks
    # torch's own counter still uses torch's formula: the grouped weight gradient `groups`x too high
    conv = nn.Conv2d(4, 4, 3, groups=4, bias=False)
    with FlopCounterMode(display=False) as counter:
        conv(torch.randn(1, 4, 5, 5, requires_grad=True)).sum().backward()
    depthwise = 4 * 9 * 9  # 4 channels x 3x3 outputs x 9 taps
    assert counter.get_total_flops() == 2 * depthwise + 2 * depthwise + 2 * 4 * depthwise
