"""Bounds on what a run may ask of the machine (issue 20, item 2; archbench/resources.py): thread counts and
model sizes are refused before anything is built, with the bound said, from the CLI, study files and the API."""

from __future__ import annotations

import os
import time

import pytest

import archbench
from archbench.errors import ResourceLimitError
from archbench.resources import MAX_MODULES_ENV, max_threads

WRN = """name = "{name}"
family = "wrn"
description = "a WRN of the given depth"
input = "3x32x32"

[args]
depth = {depth}
widen_factor = 1
"""

# 64 layers of RAM/32 bytes each: twice the machine's memory in parameters, whatever the machine.
BIG = """import os

from torch import nn

RAM = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
N = int((RAM / 32 / 4) ** 0.5) + 1


class Big(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(N, N, bias=False) for _ in range(64))

    def forward(self, x):
        return self.layers[0](x)
"""


def _refused(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr


def _ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# -------------------------------------------------------------------------------------------- threads


def test_the_thread_bound_is_four_per_core():
    assert max_threads() == 4 * os.cpu_count()


def test_bench_refuses_more_threads_than_the_bound(cli):
    _refused(cli("bench", "mnist-cnn", "--threads", "99999"),
             f"--threads 99,999 is more threads than this machine can run: at most {max_threads()}")


def test_a_study_asking_for_too_many_threads_is_named(cli, tmp_path):
    study = tmp_path / "threads.toml"
    study.write_text('models = ["mnist-cnn"]\n[options]\nthreads = 99999\n')
    _refused(cli("compare", "--study", study, "--out", tmp_path / "out"), f"{study}: options.threads: 99,999 is more threads")
    assert not (tmp_path / "out").exists()


def test_the_api_refuses_a_million_threads_before_anything_runs():
    with pytest.raises(ResourceLimitError, match=f"threads 1,000,000 is more threads .* at most {max_threads()}"):
        archbench.bench("mnist-cnn", threads=10**6)


def test_the_bound_itself_is_accepted():
    from archbench.sweep.cells import plan_cells

    cells = plan_cells([archbench.get_spec("mnist-cnn")], ["cpu"], [1], None, ["infer"], ["fp32"], threads=max_threads())
    assert [c.threads for c in cells] == [max_threads()]


# ------------------------------------------------------------------------------------------ model size


def test_a_deep_spec_is_stopped_at_the_module_bound(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_MODULES_ENV, "300")
    (tmp_path / "deep.toml").write_text(WRN.format(name="wrn-deep", depth=10_000_000))
    for command in ("summary", "bench"):
        _refused(cli(command, "wrn-deep", "--specs", tmp_path),
                 "model 'wrn-deep' has more than 300 submodules", f"set {MAX_MODULES_ENV} to allow more")


def test_a_spec_within_the_module_bound_builds(tmp_path, monkeypatch):
    from archbench.catalog.registry import count_params
    from archbench.resources import meta_build_within_bounds

    monkeypatch.setenv(MAX_MODULES_ENV, "300")
    (tmp_path / "ok.toml").write_text(WRN.format(name="wrn-ok", depth=16))
    model = meta_build_within_bounds(archbench.get_spec("wrn-ok", extra_dirs=[tmp_path]), ["cpu"])
    assert count_params(model) == 175_066  # WRN-16-1 (Zagoruyko & Komodakis: 0.17M)


def test_a_bad_module_bound_is_said(cli, monkeypatch):
    monkeypatch.setenv(MAX_MODULES_ENV, "lots")
    _refused(cli("summary", "mnist-cnn"), f"{MAX_MODULES_ENV}='lots' is not a positive integer")


def test_a_model_larger_than_the_memory_is_refused_with_its_size(cli, tmp_path):
    (tmp_path / "big.py").write_text(BIG)
    n = int((_ram() / 32 / 4) ** 0.5) + 1
    _refused(cli("summary", f"{tmp_path / 'big.py'}:Big"),
             "big.py:Big' needs", f"({64 * n * n:,} parameters), more than the", "of memory this machine has")


def test_the_api_refuses_a_model_larger_than_the_memory(tmp_path, monkeypatch):
    (tmp_path / "big.py").write_text(BIG)
    monkeypatch.syspath_prepend(str(tmp_path))
    from big import Big  # the user's model file written above

    for call in (lambda: archbench.summarize(Big, input_size=(1, 8, 8)), lambda: archbench.bench(Big, (1, 8, 8))):
        with pytest.raises(ResourceLimitError, match="more than the .* of memory this machine has"):
            call()


@pytest.mark.slow
def test_a_ten_million_layer_spec_is_refused_in_bounded_time(cli, tmp_path):
    """The issue's reproducer at the default bound: stopped after 50,000 modules (~35 s on a loaded 2-core VM,
    where it grew to 20 GB and never finished before)."""
    (tmp_path / "deep.toml").write_text(WRN.format(name="wrn-deep", depth=10_000_000))
    start = time.monotonic()
    _refused(cli("summary", "wrn-deep", "--specs", tmp_path), "has more than 50,000 submodules")
    assert time.monotonic() - start < 300
