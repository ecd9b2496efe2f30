"""Counts that stay exact off the centre (issue 19): keyword inputs count every layer; LSTM/GRU/RNN forward
and backward to hand formulas, fused kernels or not; upsampling, copies and cheap arithmetic in their
buckets; RMSNorm as normalisation; cross-check notes that name the cause; and a total that leaves ops out
is flagged "incomplete" in every output."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archbench.catalog.spec import ModelSpec
from archbench.costs.counting import count_forward, count_training_step
from archbench.costs.formulas import cudnn_rnn_backward_macs, cudnn_rnn_gates, cudnn_rnn_macs
from archbench.costs.summary import model_stats, summarize

# ------------------------------------------------------------------------------------ keyword inputs

KW_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__(); self.stem = nn.Conv2d(3, 8, 3)
        self.blocks = nn.ModuleList([nn.Linear(8, 8) for _ in range(4)])

    def forward(self, pixel_values):
        x = self.stem(pixel_values).flatten(2).transpose(1, 2)
        for b in self.blocks: x = b(x)
        return x.mean()


def make_inputs(batch, input_shape, dtype, device):
    return {"pixel_values": torch.randn(batch, *input_shape, device=device)}
'''
# the issue's reproducer at 3x32x32: the stem 8x30x30 outputs x 27, four Linears 900 tokens x 8 x 8
KW_MACS = 8 * 30 * 30 * 27 + 4 * 900 * 64


class _Containers(nn.Module):
    """Blocks called from a ModuleList, a ModuleDict and an nn.Sequential, and an auxiliary head that only
    training runs (inference does not: it stays out of the forward counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.listed = nn.ModuleList([nn.Linear(8, 8) for _ in range(2)])
        self.named = nn.ModuleDict({"a": nn.Linear(8, 8), "b": nn.Linear(8, 8)})
        self.sequence = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
        self.aux = nn.Linear(8, 3)

    def forward(self, x, *, scale: float = 1.0):
        x = self.stem(x) * scale
        for block in self.listed:
            x = block(x)
        for key in ("a", "b"):
            x = self.named[key](x)
        if self.training:
            return self.sequence(x).sum() + self.aux(x).sum()
        return self.sequence(x)


class _KeywordOnly(nn.Module):
    """The forward takes keyword-only arguments (the model cannot be called positionally)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _Containers()

    def forward(self, *, image, scale):
        return self.inner(image, scale=scale)


TOKENS = 5
# per sample: stem 5x6x8, four 8x8 Linears in the list and dict, the Sequential's 8x8 and 8x4
CONTAINER_MACS = TOKENS * (6 * 8 + 4 * 64 + 64 + 32)


def _containers_spec() -> ModelSpec:
    return ModelSpec(name="containers", family="test", input=(TOKENS, 6))


def _forms(x: torch.Tensor) -> dict[str, object]:
    return {"tensor": x, "tuple": (x,), "dict": {"x": x}}


@pytest.mark.parametrize("cross_check", [True, False], ids=["with-fvcore", "counts-only"])
def test_positional_tuple_and_keyword_inputs_count_every_container_alike(cross_check):
    x = torch.randn(2, TOKENS, 6)
    counted = {}
    for form, inputs in _forms(x).items():
        torch.manual_seed(0)
        s = summarize(_containers_spec(), model=_Containers(), inputs=inputs, depth=None, cross_check=cross_check)
        counted[form] = (s.stats.macs, s.stats.macs_with_norm, s.stats.flops_backward, s.stats.other_ops)
        rows = {row.name: row for row in s.layers}
        assert rows["listed.1"].macs == rows["named.b"].macs == 2 * TOKENS * 64, form
        assert rows["aux"].macs is None, form  # the auxiliary head: not run at inference
        if cross_check:
            assert s.cross_check.fvcore_macs == 2 * CONTAINER_MACS, (form, s.cross_check.note)
    assert counted["tensor"] == counted["tuple"] == counted["dict"]
    assert counted["dict"][0] == 2 * CONTAINER_MACS


def test_keyword_only_forward_arguments_count_as_the_positional_model():
    x = torch.randn(2, TOKENS, 6)
    positional = summarize(_containers_spec(), model=_Containers(), inputs=x, depth=0).stats
    keyword = summarize(_containers_spec(), model=_KeywordOnly(), inputs={"image": x, "scale": 0.5}, depth=0)
    assert keyword.stats.macs == positional.macs == 2 * CONTAINER_MACS
    assert keyword.stats.flops_backward == positional.flops_backward
    assert keyword.cross_check.fvcore_macs == 2 * CONTAINER_MACS  # fvcore traces the keyword call too
    counts_only = model_stats(_containers_spec(), (TOKENS, 6), model=_KeywordOnly(), inputs={"image": x, "scale": 0.5})
    assert counts_only.macs == 2 * CONTAINER_MACS


def test_the_issues_reproducer_through_the_cli(cli, tmp_path, monkeypatch):
    (tmp_path / "kw.py").write_text(KW_MODEL)
    monkeypatch.chdir(tmp_path)
    plain = cli("summary", "./kw.py:Net", "--input", "3x32x32", "--json", "--depth", "1")
    keyword = cli("summary", "./kw.py:Net", "--input", "3x32x32", "--inputs", "./kw.py:make_inputs", "--json",
                  "--depth", "1")
    assert plain.exit_code == keyword.exit_code == 0, keyword.output
    plain_data, keyword_data = json.loads(plain.stdout), json.loads(keyword.stdout)
    for key in ("macs", "macs_with_norm", "flops_forward", "flops_backward", "other_ops"):
        assert keyword_data[key] == plain_data[key], key
    assert keyword_data["macs"] == KW_MACS
    assert keyword_data["cross_check"]["fvcore_macs"] == KW_MACS  # the cross-check runs on keyword inputs
    assert {layer["name"]: layer["macs"] for layer in keyword_data["layers"]}["blocks"] == 4 * 900 * 64


# ---------------------------------------------------------------------------------- recurrent layers

BATCH, STEPS, FEATURES, HIDDEN = 3, 5, 8, 16
GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}
GATE_OPS = {nn.LSTM: 13, nn.GRU: 10, nn.RNN: 2}  # elementwise operations per hidden unit and step


def rnn_forward_macs(cls, layers: int, directions: int, proj: int = 0) -> int:
    """By hand, per token (step x sample), each layer and direction: the input product G·H x I_l, the
    recurrent product G·H x R (R = proj or H) and, with proj_size, the projection P x H."""
    gates, recurrent = GATES[cls] * HIDDEN, proj or HIDDEN
    per_token = 0
    for layer in range(layers):
        inputs = FEATURES if layer == 0 else directions * recurrent
        per_token += directions * (gates * (inputs + recurrent) + proj * HIDDEN)
    return BATCH * STEPS * per_token


def rnn_decomposed_backward_macs(cls, layers: int, directions: int, proj: int = 0) -> int:
    """Each product's input and weight gradients (2x), except the two input gradients no one needs: of the
    first layer's input (the data) and, per layer and direction, of the initial state h0 (zeros)."""
    gates, recurrent = GATES[cls] * HIDDEN, proj or HIDDEN
    data_gradient = BATCH * STEPS * directions * gates * FEATURES
    initial_state_gradients = layers * directions * BATCH * gates * recurrent
    return 2 * rnn_forward_macs(cls, layers, directions, proj) - data_gradient - initial_state_gradients


class _Recurrent(nn.Module):
    """Time-major and contiguous: a batch-first input reaches the first product transposed, and torch then
    adds its bias separately (an elementwise add beside the gates)."""

    def __init__(self, cls, **settings) -> None:
        super().__init__()
        self.rnn = cls(FEATURES, HIDDEN, **settings)

    def forward(self, x):
        return self.rnn(x.transpose(0, 1).contiguous())[0]


def _rnn_summary(cls, **settings):
    spec = ModelSpec(name=cls.__name__.lower(), family="test", input=(STEPS, FEATURES))
    return summarize(spec, batch=BATCH, model=_Recurrent(cls, **settings), depth=0)


def test_lstm_bidirectional_two_layers_with_projection_by_hand():
    """proj_size keeps the CPU off oneDNN: the LSTM runs as addmm/mm and elementwise gates."""
    s = _rnn_summary(nn.LSTM, num_layers=2, bidirectional=True, proj_size=4)
    assert s.stats.macs == rnn_forward_macs(nn.LSTM, 2, 2, proj=4) == 49_920
    assert s.stats.flops_backward == 2 * rnn_decomposed_backward_macs(nn.LSTM, 2, 2, proj=4)
    assert s.stats.other_ops == BATCH * STEPS * 2 * 2 * GATE_OPS[nn.LSTM] * HIDDEN
    assert not s.stats.uncounted_ops and not s.coverage.backward_uncounted_ops and s.stats.macs_flag == ""


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN (MKLDNN) is not in this torch build")
def test_lstm_on_the_fused_onednn_kernel_counts_as_its_decomposition():
    s = _rnn_summary(nn.LSTM, num_layers=2, bidirectional=True)
    forward = rnn_forward_macs(nn.LSTM, 2, 2)
    gates = BATCH * STEPS * 2 * 2 * GATE_OPS[nn.LSTM] * HIDDEN
    assert s.coverage.macs_by_op == {"mkldnn_rnn_layer": forward}
    assert s.coverage.other_ops_by_op == {"mkldnn_rnn_layer (gates)": gates}
    # the fused backward computes every input gradient (the data's and h0's too): 2x the forward
    assert s.stats.flops_backward == 2 * 2 * forward
    assert s.coverage.backward_other_ops_by_op["mkldnn_rnn_layer_backward (gates)"] == gates
    assert not s.stats.uncounted_ops and not s.coverage.backward_uncounted_ops
    assert "recurrent" in s.cross_check.note and "lstm" in s.cross_check.note  # fvcore has no formula for it

    model, x = _Recurrent(nn.LSTM, num_layers=2, bidirectional=True), torch.randn(BATCH, STEPS, FEATURES)
    with torch.backends.mkldnn.flags(enabled=False):  # the same LSTM, decomposed into addmm/mm and gates
        decomposed = count_training_step(model, lambda: model(x)).forward
    assert "mkldnn_rnn_layer" not in decomposed.by_op("macs")
    assert decomposed.total("macs") == forward and decomposed.total("other") == gates


@pytest.mark.parametrize("cls, settings", [(nn.GRU, {}), (nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu"})],
                         ids=["gru", "rnn-tanh", "rnn-relu"])
def test_gru_and_rnn_bidirectional_two_layers_by_hand(cls, settings):
    s = _rnn_summary(cls, num_layers=2, bidirectional=True, **settings)
    assert s.stats.macs == rnn_forward_macs(cls, 2, 2)
    assert s.stats.flops_backward == 2 * rnn_decomposed_backward_macs(cls, 2, 2)
    assert s.stats.other_ops == BATCH * STEPS * 2 * 2 * GATE_OPS[cls] * HIDDEN
    assert not s.stats.uncounted_ops and not s.coverage.backward_uncounted_ops


def test_the_cudnn_formula_on_the_shapes_of_a_projected_lstm():
    """No GPU needed: the formula of aten._cudnn_rnn, given the shapes cuDNN receives (the flat weight list
    of every layer and direction), equals the hand count; its backward adds the weight gradients if asked."""
    lstm = nn.LSTM(FEATURES, HIDDEN, num_layers=2, bidirectional=True, proj_size=4, batch_first=True)
    weights = [tuple(w.shape) for w in lstm._flat_weights]
    x = (BATCH, STEPS, FEATURES)
    forward = rnn_forward_macs(nn.LSTM, 2, 2, proj=4)
    assert cudnn_rnn_macs(x, weights) == forward
    # input, weight[], weight_stride0, weight_buf, hx, cx, mode (2: LSTM), hidden_size, proj_size, num_layers,
    # batch_first, dropout, train, bidirectional, batch_sizes, dropout_state
    assert cudnn_rnn_gates(x, weights, 5, None, (4, BATCH, 4), (4, BATCH, HIDDEN), 2, HIDDEN, 4, 2, True, 0.0,
                           True, True, [], None) == BATCH * STEPS * 4 * 13 * HIDDEN
    tail = (HIDDEN, 4, 2, True, 0.0, True, True, [], None, (1,))
    assert cudnn_rnn_backward_macs(x, weights, 5, None, None, None, None, None, None, None, 2, *tail,
                                   [True, True, True, True]) == 2 * forward
    assert cudnn_rnn_backward_macs(x, weights, 5, None, None, None, None, None, None, None, 2, *tail,
                                   [True, True, True, False]) == forward


# ------------------------------------------------------------------------------- buckets of smaller ops


class _Resampling(nn.Module):
    def forward(self, x):  # x: 1x2x4x4
        return [F.interpolate(x, scale_factor=2, mode="nearest"), F.interpolate(x, scale_factor=2, mode="bilinear"),
                F.interpolate(x, scale_factor=2, mode="bicubic"), F.interpolate(x.flatten(2), scale_factor=2, mode="linear"),
                F.interpolate(x.unsqueeze(2), scale_factor=2, mode="trilinear")]


def test_every_upsampling_mode_counts_one_mac_per_interpolation_point():
    counts = count_forward(_Resampling(), torch.randn(1, 2, 4, 4))
    out_2d, out_1d, out_3d = 2 * 8 * 8, 2 * 32, 2 * 2 * 8 * 8
    assert counts.by_op("norm_pool") == {"upsample_bicubic2d": 16 * out_2d, "upsample_trilinear3d": 8 * out_3d,
                                         "upsample_bilinear2d": 4 * out_2d, "upsample_nearest2d": out_2d,
                                         "upsample_linear1d": 2 * out_1d}
    assert counts.by_op(None) == {}


class _CopiesAndCheapArithmetic(nn.Module):
    def forward(self, x):  # x: 1x2x4x4
        index = torch.zeros_like(x, dtype=torch.long)
        columns = F.unfold(x, 2)  # im2col: a copy
        return [F.pad(x, (1, 1, 1, 1), mode="reflect"), F.fold(columns, (4, 4), 2), x.cumsum(-1),
                torch.zeros_like(x).scatter(1, index, x), torch.zeros_like(x).scatter_add(1, index, x)]


def test_copies_are_free_and_cheap_arithmetic_is_other_ops():
    counts = count_forward(_CopiesAndCheapArithmetic(), torch.randn(1, 2, 4, 4))
    assert {"im2col", "reflection_pad2d", "scatter"} <= set(counts.by_op("free"))
    columns = 2 * 4 * 9  # 8 rows of 9 patches: each added into the image once
    assert counts.by_op("other") == {"col2im": columns, "cumsum": 32, "scatter_add": 32}
    assert counts.by_op(None) == {}


class _Norms(nn.Module):
    """nn.RMSNorm, an RMSNorm written by hand, then a global average pool (a mean that is pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(8)
        self.proj = nn.Linear(8, 8)

    def forward(self, x):  # x: B x 4 x 8
        x = self.proj(self.norm(x))
        x = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6)
        return x.mean(1)


def test_rmsnorm_as_a_mean_of_squares_is_normalisation_and_a_plain_mean_is_pooling():
    s = summarize(ModelSpec(name="norms", family="test", input=(4, 8)), model=_Norms(), depth=0)
    assert s.coverage.norm_pool_macs_by_op == {"mean (rms_norm)": 2 * 4 * 8, "mean": 4 * 8}
    assert s.cross_check.archbench_by_kind == {"matrix product": 4 * 64, "normalisation": 2 * 32, "pooling": 32}
    assert "normalisation" in s.cross_check.note and "pooling" in s.cross_check.note


class _MaskedAttention(nn.Module):
    """Attention with an additive bias (relative positions, as Swin, CoAtNet, NesT): on the CPU, SDPA's
    math path runs it as bmm."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.bias = nn.Parameter(torch.zeros(1, 2, 6, 6))

    def forward(self, x):  # x: B x 1 x 6 x 8
        q, k, v = self.qkv(x[:, 0]).reshape(x.shape[0], 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias)


def test_a_matrix_product_difference_names_attention_run_as_bmm():
    s = summarize(ModelSpec(name="masked", family="test", input=(1, 6, 8)), model=_MaskedAttention(), depth=0)
    assert s.coverage.macs_by_op == {"addmm": 6 * 8 * 24, "bmm": 2 * 2 * 6 * 6 * 4}
    note = s.cross_check.note
    assert "matrix product: fvcore" in note and "archbench: addmm 1.15 k, bmm 576" in note
    assert "no formula for scaled_dot_product_attention" in note and "bmm: attention" in note


# --------------------------------------------------------------------------------- the incomplete flag

UNCOUNTED_MODEL = '''
import torch
from torch import nn


class Net(nn.Module):
    """A conv, then distances to learned centres: torch.cdist runs aten._euclidean_dist, which no formula counts."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.centres = nn.Parameter(torch.randn(5, 4))

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2)
        return torch.cdist(tokens, self.centres.expand(x.shape[0], -1, -1)).mean((1, 2))
'''
FLAG = "incomplete: 1 op uncounted"


@pytest.fixture
def uncounted_model(tmp_path, monkeypatch) -> str:
    (tmp_path / "unc.py").write_text(UNCOUNTED_MODEL)
    monkeypatch.chdir(tmp_path)
    return "./unc.py:Net"


def test_an_uncounted_op_flags_the_summary_in_rich_markdown_and_json(cli, uncounted_model):
    rich = cli("summary", uncounted_model, "--input", "3x8x8", "--depth", "0")
    assert rich.exit_code == 0, rich.output
    macs_line = next(line for line in rich.stdout.splitlines() if "forward MACs" in line)
    assert "3,888" in macs_line and FLAG in macs_line
    markdown = cli("summary", uncounted_model, "--input", "3x8x8", "--depth", "0", "--markdown").stdout
    assert f"| forward MACs | 3,888 (3.888 k) — {FLAG} |" in markdown
    data = json.loads(cli("summary", uncounted_model, "--input", "3x8x8", "--depth", "0", "--json").stdout)
    assert (data["macs"], data["macs_flag"], data["uncounted_ops"]) == (3_888, FLAG, {"_euclidean_dist": 1})
    assert data["flops_backward_flag"] == ""  # its backward is counted (_euclidean_dist's gradient is elementwise)


def test_an_uncounted_op_flags_results_csv_json_and_report(uncounted_model, tmp_path):
    from archbench.catalog.refs import resolve_model
    from archbench.report import write_report
    from archbench.report.csvfile import CsvFormat
    from archbench.report.markdown import MarkdownFormat
    from archbench.results.data import ModelInfo, ReportData
    from archbench.results.jsonfile import JsonFormat
    from archbench.rows import ResultRow
    from archbench.study import adhoc_study

    spec = resolve_model(uncounted_model)
    stats = model_stats(spec, (3, 8, 8))
    assert stats.macs_flag == FLAG
    name = spec.name
    row = ResultRow(model=name, device="cpu", mode="infer", batch=1, input="3x8x8", dtype="fp32", threads=1,
                    n_samples=5, median_ms=1.0, ci_low_ms=0.9, ci_high_ms=1.1, iqr_ms=0.1, min_ms=0.9,
                    samples_per_s=1000.0, samples_ms=(0.9, 1.0, 1.0, 1.0, 1.1))
    data = ReportData(study=adhoc_study([name], inputs=[(3, 8, 8)], batches=[1], modes=["infer"]), rows=(row,),
                      models=(ModelInfo(name, "user", "", "3x8x8"),), stats=(stats,))
    out = tmp_path / "report"
    write_report(data, out, [CsvFormat(), JsonFormat(), MarkdownFormat()])
    with (out / "results.csv").open(newline="") as fh:
        record = next(csv.DictReader(fh))
    assert (record["macs_per_sample"], record["macs_flag"], record["flops_backward_flag"]) == ("3888", FLAG, "")
    stored = json.loads((out / "results.json").read_text())["model_stats"][0]
    assert (stored["macs"], stored["macs_flag"]) == (3_888, FLAG)
    report = (out / "report.md").read_text()
    flagged = [line for line in report.splitlines() if line.startswith(f"| `{name}` |") and "(incomplete)" in line]
    assert len(flagged) == 2  # the headline and the Models table; the latter footnotes the ops
    assert "[^1]" in flagged[1]
    assert f"[^1]: {name} at 3x8x8: {FLAG} in the MACs and forward FLOPs (_euclidean_dist ×1)" in report
