"""`archbench summary`: exact counts (hand-computed, or fvcore's published count of WRN-40-10), the
backward FLOPs of grouped convolutions, the two failures the issue names located to their module, the
JSON schema, and a model left exactly as it was."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_subprocess
from torch import nn

from archbench.catalog.models.resnet_cifar import ResBlock
from archbench.catalog.registry import build_model, get_spec, register_family
from archbench.catalog.spec import ModelSpec
from archbench.costs.summary import SCHEMA, summarize
from archbench.errors import ModelRunError

# --------------------------------------------------------------------------------------------- counts

# MNIST CNN of seed 002 at 1x28x28, by hand (one MAC per multiply-accumulate, bias adds not counted):
# conv1 6x24x24 outputs x 1*5*5 = 86,400; conv2 16x8x8 x 6*5*5 = 153,600; fc 256*120 + 120*84 + 84*10 = 41,640.
MNIST_MACS = 86_400 + 153_600 + 256 * 120 + 120 * 84 + 84 * 10
# Backward: the input needs no gradient, so conv1 computes only its weight gradient (2 x its MACs); every
# other conv/linear computes input and weight gradients (2 x 2 x its MACs). Bias gradients are sums (no formula).
MNIST_BACKWARD_FLOPS = 2 * 86_400 + 4 * 153_600 + 4 * (256 * 120 + 120 * 84 + 84 * 10)


def test_mnist_counts_by_hand():
    s = summarize(get_spec("mnist-cnn"), depth=None)
    stats = s.stats
    assert stats.params_total == stats.params_trainable == 44_426
    assert stats.macs == MNIST_MACS == 281_640
    assert stats.flops_forward == 2 * MNIST_MACS
    assert stats.flops_backward == MNIST_BACKWARD_FLOPS
    # no normalisation or adaptive pooling: both totals agree; the rest is its own figure, op by op
    assert stats.macs_with_norm == MNIST_MACS and stats.uncounted_ops == {}
    # max pooling: 6x12x12 and 16x4x4 outputs, 2x2 windows; ReLU: one op per element of its outputs
    assert s.coverage.other_ops_by_op == {"relu": 6 * 24 * 24 + 16 * 8 * 8 + 120 + 84,
                                          "max_pool2d_with_indices": 4 * (6 * 12 * 12 + 16 * 4 * 4)}
    assert stats.other_ops == sum(s.coverage.other_ops_by_op.values())
    # batch scales every count linearly
    assert summarize(get_spec("mnist-cnn"), batch=4, depth=0).stats.macs == 4 * MNIST_MACS


@pytest.mark.parametrize("input, gmacs", [((3, 32, 32), 8.0814), ((3, 64, 64), 32.326)])
def test_wrn_40_10_matches_fvcores_published_count(input, gmacs):
    s = summarize(get_spec("wrn-40-10"), input=input, depth=0)
    stats = s.stats
    assert stats.params_total == 55_841_754
    assert stats.macs_with_norm / 1e9 == pytest.approx(gmacs, rel=1e-3)  # fvcore's convention: BatchNorm, pooling
    assert stats.macs == s.coverage.macs_by_op["convolution"] + s.coverage.macs_by_op["addmm"]
    assert s.cross_check.agrees and s.cross_check.fvcore_macs == stats.macs_with_norm
    # training-mode activations are measured, and grow with the input area (4x pixels -> ~4x bytes)
    assert stats.activation_bytes > 0


def test_activation_memory_scales_with_the_input_area():
    small = summarize(get_spec("wrn-40-1"), input=(3, 32, 32), depth=0).stats.activation_bytes
    large = summarize(get_spec("wrn-40-1"), input=(3, 64, 64), depth=0).stats.activation_bytes
    assert 3.8 < large / small < 4.1


def test_resnet_cifar_and_resnext_counts():
    stats = summarize(get_spec("resnet-cifar-n5"), depth=0).stats  # default input 3x64x64
    assert stats.params_total == 2_263_722
    resnext = summarize(get_spec("resnext-50"), input=(3, 32, 32), depth=0).stats
    assert resnext.params_total == 14_788_772
    # torch's own counter says 5.9x here (it ignores `groups` in the weight gradient); ~2x is right
    assert 1.9 < resnext.flops_backward / resnext.flops_forward < 2.05


# ------------------------------------------------------------------------- grouped convolution backward


class _GroupedPair(nn.Module):
    """A dense 1x1 conv feeding a grouped 3x3 conv, so the grouped conv needs both gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Conv2d(8, 8, 1, bias=False)
        self.grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)

    def forward(self, x):
        return self.grouped(self.dense(x))


def test_grouped_convolution_backward_flops_by_hand():
    spec = ModelSpec(name="grouped-pair", family="test", input=(8, 6, 6))
    s = summarize(spec, model=_GroupedPair(), depth=None)
    # dense 1x1: 8 outputs x 6x6 x 8 inputs = 2,304 MACs; grouped 3x3: 16 outputs x 6x6 x (8/4 inputs x 9) = 10,368
    dense, grouped = 8 * 36 * 8, 16 * 36 * (8 // 4) * 9
    assert s.stats.macs == dense + grouped
    # backward: the grouped conv's input gradient and weight gradient each cost its forward (2 FLOPs per MAC);
    # the first conv needs only its weight gradient. torch's formula would count the grouped weight gradient 4x.
    assert s.stats.flops_backward == 2 * dense + 2 * (2 * grouped)
    assert s.coverage.backward_flops_by_op == {"convolution_backward": 2 * dense + 4 * grouped}


def test_depthwise_convolution_backward_flops_by_hand():
    model = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False))
    s = summarize(ModelSpec(name="depthwise", family="test", input=(4, 5, 5)), model=model, depth=0)
    pointwise, depthwise = 4 * 25 * 4, 4 * 25 * 9
    assert s.stats.macs == pointwise + depthwise
    assert s.stats.flops_backward == 2 * pointwise + 4 * depthwise


# ---------------------------------------------------------------------------------------- layer table


class _SharedAndUnused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        return self.conv(self.conv(x))


def test_layer_table_folds_repeated_calls_and_marks_layers_that_never_ran():
    s = summarize(ModelSpec(name="shared", family="test", input=(3, 8, 8)), model=_SharedAndUnused(), depth=None)
    rows = {row.name: row for row in s.layers}
    assert rows["conv"].calls == 2 and rows["conv"].output_shape == (1, 3, 8, 8)
    assert rows["conv"].params == 84 and rows["conv"].macs == 2 * (3 * 64) * (3 * 9)  # both calls
    assert rows["unused"].calls == 0 and rows["unused"].output_shape is None and rows["unused"].macs is None
    assert rows["unused"].params == 20
    assert s.stats.params_total == 104


class _WithAuxHead(nn.Module):
    """An auxiliary head that runs in training only (as inception_v3's), and an eval-mode no-op (dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, bias=False)
        self.drop = nn.Dropout()
        self.aux = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 2, bias=False))

    def forward(self, x):
        y = self.drop(self.body(x))
        return (y, self.aux(y)) if self.training else y


def test_layers_that_inference_skips_show_as_not_run():
    s = summarize(ModelSpec(name="aux", family="test", input=(3, 6, 6)), model=_WithAuxHead(), depth=None)
    rows = {row.name: row for row in s.layers}
    assert rows["body"].output_shape == (1, 4, 4, 4) and rows["body"].macs == 4 * 16 * 27
    assert rows["drop"].calls == 1 and rows["drop"].output_shape == (1, 4, 4, 4)  # ran, as an identity
    for name in ("aux", "aux.0", "aux.1"):
        assert (rows[name].calls, rows[name].output_shape, rows[name].macs) == (0, None, None), name
    assert rows["aux"].params == 128 and s.stats.macs == 4 * 16 * 27  # forward MACs: inference only
    # the training step runs the head: its input and weight gradients are in the backward count
    assert s.stats.flops_backward == 2 * (4 * 16 * 27) + 4 * 128


def test_a_module_list_is_never_called_but_adds_up_its_childrens_macs():
    model = nn.Sequential(nn.ModuleList([nn.Conv2d(3, 3, 1, bias=False)]))
    model.forward = lambda x: model[0][0](x)  # the list is only a container
    s = summarize(ModelSpec(name="listed", family="test", input=(3, 4, 4)), model=model, depth=None)
    rows = {row.name: row for row in s.layers}
    assert (rows["0"].calls, rows["0"].output_shape, rows["0"].macs) == (0, None, 3 * 16 * 3)
    assert rows["0.0"].calls == 1 and rows["0.0"].macs == 3 * 16 * 3


def test_depth_limits_the_layer_table():
    spec = get_spec("wrn-16-8")
    assert {row.depth for row in summarize(spec, depth=1).layers} == {1}
    rows = summarize(spec, depth=2).layers
    assert {row.depth for row in rows} == {1, 2} and "stage2.1" in {row.name for row in rows}
    assert summarize(spec, depth=0).layers == ()


# --------------------------------------------------------------------------------------------- failures


@pytest.mark.slow
def test_resnet_cifar_at_32x32_names_the_avgpool_and_the_inputs_that_run(cli):
    result = cli("summary", "resnet-cifar-n5", "--input", "3x32x32")
    assert result.exit_code == 1
    message = result.stderr
    assert "Traceback" not in result.output
    assert "`avgpool` (AvgPool2d(kernel_size=8" in message
    assert "received 1x128x4x4" in message
    assert "output size is too small" in message.lower()
    assert "3x64x64" in message  # an input size that does run


def test_mnist_at_32x32_names_the_only_input_that_runs(cli):
    result = cli("summary", "mnist-cnn", "--input", "1x32x32")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "`fc1` (Linear" in result.stderr and "received 1x400" in result.stderr
    assert "Inputs that run: 1x28x28." in result.stderr  # probed below 32 too
    assert "not the cause" not in result.stderr


def test_a_run_probes_a_failing_models_working_inputs_once_per_input():
    """Each failed cell (and each failed FLOP count) of one model on one input gives the same located message;
    the run probes the working sizes once per input (batch 1, batch 2), not once per cell and count."""
    from archbench.catalog.source import ModuleSource
    from archbench.sweep.cell_measure import RunCaches, measure_cell
    from archbench.sweep.cells import Cell

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))  # runs at 3x28x28 only
    source = ModuleSource(net, "fixed-28", (3, 28, 28))
    caches = RunCaches()

    def cell(mode: str, batch: int) -> Cell:
        return Cell(source.name, source, "cpu", mode, batch, (3, 32, 32), threads=1)

    rows = [measure_cell(cell(mode, batch), caches=caches) for batch in (1, 2) for mode in ("infer", "train")]
    assert all(r.status == "error" and "Inputs that run: 3x28x28." in r.error for r in rows), [r.error for r in rows]
    assert len(caches.probes) == 2
    assert measure_cell(cell("train", 2), caches=RunCaches()).error == rows[-1].error  # as a run of its own says


def _seed_resnet_draft() -> nn.Module:
    """Seed 002's first draft: stem, then layer1 (16 -> 16) and layer2 (16 -> 32, stride 2) of ResBlocks
    whose shortcut is the bare ``out += residual``, before its author padded it."""
    def block(c_in, c_out, stride):
        return ResBlock(c_in, c_out, stride, shortcut="identity")

    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         nn.Sequential(block(16, 16, 1)), nn.Sequential(block(16, 32, 2)))


def test_unpadded_shortcut_is_located_to_the_block_with_the_shapes_it_received():
    spec = ModelSpec(name="seed-resnet-draft", family="test", input=(3, 32, 32))
    with pytest.raises(ModelRunError) as info:
        summarize(spec, model=_seed_resnet_draft())
    message = str(info.value)
    assert "The size of tensor a (16) must match the size of tensor b (32)" in message
    assert "`4.0` (ResBlock" in message  # the block, by its path in the model
    assert "received 1x16x32x32" in message
    assert "after `4.0.bn2` returned 1x32x16x16" in message
    assert "the input size is not the cause" in message  # the meta probes fail alike at every size


def test_the_unpadded_shortcut_spec_option_fails_the_same_way_through_the_cli(cli):
    result = cli("summary", "resnet-cifar-n5", "--set", 'shortcut="identity"')
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "`layer2.0` (ResBlock" in result.stderr
    assert "must match the size of tensor" in result.stderr


def test_cuda_without_a_gpu_is_a_clear_error(cli):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = cli("summary", "mnist-cnn", "--device", "cuda")
    assert result.exit_code == 2 and "cuda" in result.stderr.lower() and "Traceback" not in result.output


# ------------------------------------------------------------------------------------------ JSON schema


def test_json_schema(cli):
    result = cli("summary", "mnist-cnn", "--json", "--depth", "1")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == SCHEMA
    expected = {
        "model": str, "family": str, "description": str, "input": list, "batch": int, "device": str, "dtype": str,
        "torch": str, "overrides": dict, "conventions": dict, "params_total": int, "params_trainable": int,
        "params_non_trainable": int, "buffers": int, "param_bytes": int, "macs": int, "flops_forward": int,
        "flops_backward": int, "activation_bytes": int, "training_batch": int, "uncounted_ops": dict,
        "macs_with_norm": int, "other_ops": int, "macs_by_op": dict, "norm_pool_macs_by_op": dict,
        "other_ops_by_op": dict, "free_ops": dict, "formulas": dict, "backward_flops_by_op": dict,
        "backward_other_ops_by_op": dict, "backward_uncounted_ops": dict, "cross_check": dict, "layers": list,
    }
    for key, kind in expected.items():
        assert isinstance(data[key], kind), key
    assert data["model"] == "mnist-cnn" and data["input"] == [1, 28, 28] and data["batch"] == data["training_batch"] == 1
    assert data["params_total"] == 44_426 and data["macs"] == MNIST_MACS
    assert data["flops_forward"] == 2 * MNIST_MACS and data["flops_backward"] == MNIST_BACKWARD_FLOPS
    assert {"macs", "macs_with_norm", "other_ops", "flops_forward", "flops_backward", "activation_bytes"} <= set(
        data["conventions"])
    assert "_ops" in data["conventions"]["macs"] and "fvcore" in data["conventions"]["macs_with_norm"]
    assert data["cross_check"]["agrees"] is True
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert list(layers) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert layers["conv1"] == {"name": "conv1", "type": "Conv2d", "depth": 1, "output_shape": [1, 6, 24, 24],
                               "calls": 1, "params": 156, "macs": 86_400, "macs_with_norm": 86_400,
                               "uncounted_ops": {}}
    assert sum(layer["params"] for layer in data["layers"]) == 44_426


def test_markdown_output_is_a_table_with_the_conventions(cli):
    result = cli("summary", "mnist-cnn", "--markdown")
    assert result.exit_code == 0
    assert "| conv1 |" in result.stdout.replace("  ", " ") or "| `conv1`" in result.stdout
    assert "torchvision _ops convention; 1 MAC = 2 FLOPs" in result.stdout
    assert "| MACs with norm |" in result.stdout and "fvcore / timm infer_gmacs convention" in result.stdout


# ------------------------------------------------------------------------------------------ no effects


@pytest.mark.parametrize("training", [True, False])
def test_summarising_leaves_the_model_unchanged(training):
    spec = get_spec("resnext-50")
    model = build_model(spec, overrides={"blocks": [1, 1, 1, 1]})  # grouped convs, BatchNorm, small
    model.train(training)
    next(iter(model.children())).train(not training)  # a mixed state must come back mixed
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()

    summarize(spec, input=(3, 32, 32), model=model)

    assert {name: m.training for name, m in model.named_modules()} == modes
    after = model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)  # BatchNorm statistics untouched
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.slow
def test_no_third_party_warnings_reach_the_user():
    result = run_subprocess("summary", "mnist-cnn")
    assert result.exit_code == 0, result.stderr
    assert "Warning" not in result.stderr and "warn" not in result.stderr.lower()
    assert "Units." not in result.output  # torchinfo's enum label, never shown


class _GreedyNet(nn.Module):
    """Asks torch's CPU allocator for 4 PiB in its forward: a real out-of-memory error."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        torch.empty(1 << 50)
        return self.fc(x.flatten(1))


@register_family("summary-test-greedy")
def _greedy_net() -> nn.Module:
    return _GreedyNet()


def test_out_of_memory_is_a_short_message_naming_model_input_and_batch(cli, tmp_path):
    (tmp_path / "greedy.toml").write_text(
        'name = "greedy"\nfamily = "summary-test-greedy"\ndescription = "allocates 4 PiB"\ninput = "1x2x2"\n')
    result = cli("summary", "greedy", "--batch", "3", "--specs", tmp_path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "model 'greedy' ran out of memory on cpu at input 1x2x2, batch 3" in result.stderr
    assert "try a smaller --batch or --input" in result.stderr


def test_batch_norm_that_cannot_train_on_one_sample_is_counted_at_batch_2_and_halved():
    """Like inception_v3's auxiliary head: BatchNorm after global pooling sees one value per channel at batch 1."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4, 2, bias=False))
    s = summarize(ModelSpec(name="pooled-bn", family="test", input=(3, 6, 6)), model=model, depth=None)
    assert s.batch == 1 and s.training_batch == 2
    conv, linear = 4 * 4 * 4 * 27, 4 * 2  # MACs per sample
    # per sample: the conv's weight gradient (its input needs none), the linear's input and weight gradients
    assert s.stats.flops_backward == 2 * conv + 4 * linear
    assert s.layers[0].output_shape == (1, 4, 4, 4)  # the layer table stays at batch 1 (eval mode)
    assert s.stats.activation_bytes > 0
