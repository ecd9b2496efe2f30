"""Every reference architecture reproduces its documented parameter count exactly (built on `meta`)."""

from __future__ import annotations

import pytest
import torch

from archbench.catalog.registry import build_model, count_params, get_spec, list_models, register_family
from archbench.errors import DuplicateFamilyError, SpecError

# The counts the seed documents and papers give (issue 2); independent of the spec files' `params`.
EXPECTED = {
    "wrn-40-1": 563_930,
    "wrn-40-2": 2_243_546,
    "wrn-40-4": 8_949_210,
    "wrn-40-8": 35_748_314,
    "wrn-28-10": 36_479_194,
    "wrn-28-12": 52_517_850,
    "wrn-22-8": 17_158_106,
    "wrn-22-10": 26_797_914,
    "wrn-16-8": 10_961_370,
    "wrn-16-10": 17_116_634,
    "wrn-40-10": 55_841_754,
    "wrn-40-10-bias": 55_856_330,
    "resnext-50": 14_788_772,
    "resnext-101": 25_303_204,
    "resnext-152": 33_343_652,
    "resnext-50-dense": 23_177_124,
    "resnext-101-dense": 42_325_924,
    "resnext-152-dense": 56_969_124,
    "resnet-cifar-n5": 2_263_722,
    "resnet-cifar-n7": 3_049_962,
    "resnet-cifar-2-2-2-2": 1_084_362,
    "resnet-cifar-3-4-6-3": 1_718_442,
    "mnist-cnn": 44_426,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_reproduces_documented_count(name):
    spec = get_spec(name)
    model = build_model(spec, device="meta")
    assert count_params(model) == EXPECTED[name]
    assert spec.params == EXPECTED[name], "the spec file's expected count must be the documented one"
    assert all(p.device.type == "meta" for p in model.parameters())


def test_every_builtin_spec_is_covered():
    assert {s.name for s in list_models(source="specs")} == set(EXPECTED)


def test_wrn_block_structure_matches_the_paper():
    model = build_model(get_spec("wrn-16-8"), device="meta")
    block = model.stage2[0]
    # pre-activation: BN -> ReLU -> conv, dropout between the convs, bias-free, 1x1 projection on change
    assert [type(m).__name__ for m in block.children()] == [
        "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU", "Dropout", "Conv2d", "Conv2d"]
    assert block.conv1.bias is None and block.shortcut.kernel_size == (1, 1) and block.shortcut.stride == (2, 2)
    assert model.stage2[1].shortcut is None
    assert [len(s) for s in (model.stage1, model.stage2, model.stage3)] == [2, 2, 2]
    assert model.fc.in_features == 512 and model.fc.out_features == 10


def test_resnext_groups_the_first_conv_unless_dense():
    grouped = build_model(get_spec("resnext-50"), device="meta").conv2[0].split_transforms[0]
    dense = build_model(get_spec("resnext-50-dense"), device="meta").conv2[0].split_transforms[0]
    assert (grouped.groups, grouped.out_channels) == (32, 128)
    assert (dense.groups, dense.out_channels) == (1, 128)


def test_models_run_forward_on_their_default_input():
    for name in ("mnist-cnn", "wrn-40-1", "resnet-cifar-2-2-2-2"):
        spec = get_spec(name)
        model = build_model(spec).eval()
        with torch.inference_mode():
            out = model(torch.randn(2, *spec.input))
        assert out.shape == (2, 10)


def test_resnet_cifar_needs_64x64_because_of_avgpool8():
    model = build_model(get_spec("resnet-cifar-2-2-2-2")).eval()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="too small"):
        model(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("depth, near", [(41, "40 or 46"), (30, "28 or 34"), (6, "10")])
def test_invalid_wrn_depth_names_the_valid_depths_near_it(depth, near):
    with pytest.raises(SpecError, match=f"depth {depth} is invalid.*nearest valid: {near}"):
        build_model(get_spec("wrn-40-1"), device="meta", overrides={"depth": depth})


def test_overrides_are_type_checked_and_unknown_keys_rejected():
    spec = get_spec("wrn-40-1")
    with pytest.raises(SpecError, match="has no argument 'width'.*Valid arguments: depth: int, widen_factor: int"):
        build_model(spec, device="meta", overrides={"width": 2})
    with pytest.raises(SpecError, match="'depth' = 'forty' should be int"):
        build_model(spec, device="meta", overrides={"depth": "forty"})
    assert count_params(build_model(spec, device="meta", overrides={"widen_factor": 2})) == EXPECTED["wrn-40-2"]


def test_registering_a_family_twice_raises():
    @register_family("test-duplicate-family")
    def first():  # pragma: no cover - never built
        raise AssertionError

    with pytest.raises(DuplicateFamilyError, match="test-duplicate-family"):
        register_family("test-duplicate-family")(first)


@pytest.mark.slow
def test_every_torchvision_classifier_matches_its_weights_metadata():
    from torchvision.models import get_model_weights

    specs = list_models(source="torchvision")
    assert len(specs) >= 80
    wrong = {}
    for spec in specs:
        expected = get_model_weights(spec.name).DEFAULT.meta["num_params"]
        built = count_params(build_model(spec, device="meta"))
        if built != expected or spec.params != expected:
            wrong[spec.name] = (built, expected)
    assert wrong == {}


def test_torchvision_default_input_is_the_weights_crop_size():
    assert get_spec("resnet50").input == (3, 224, 224)
    assert get_spec("inception_v3").input == (3, 299, 299)
    assert get_spec("efficientnet_b7").input == (3, 600, 600)
