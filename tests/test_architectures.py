"""The seed networks: shapes, parameter names, registry behaviour, torchvision parity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import architectures as A
from architectures import (
    ModelSpec,
    UnknownModelError,
    get_model,
    get_spec,
    list_models,
    register_model,
)

SEED_NAMES = {
    "lenet": [
        "layer1.conv1.weight",
        "layer2.conv2.weight",
        "layer3.fc1.weight",
        "layer3.fc2.bias",
        "layer3.fc3.weight",
    ],
    "mnist_cnn": [
        "layer1.0.weight",
        "layer1.1.running_mean",
        "layer4.0.weight",
        "fc.0.weight",
        "fc.2.weight",
        "fc.3.bias",
    ],
    "alexnet": [
        "features.0.weight",
        "features.10.weight",
        "classifier.1.weight",
        "classifier.4.weight",
        "classifier.6.bias",
    ],
    "vgg16": [
        "features.0.weight",
        "features.28.weight",
        "classifier.0.weight",
        "classifier.6.bias",
    ],
}


def test_registry_lists_every_family_sorted() -> None:
    names = list_models()
    assert names == sorted(names)
    assert {"lenet", "mnist_cnn", "alexnet"} <= set(names)
    assert {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")} <= set(names)


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(UnknownModelError, match="known models: alexnet, lenet"):
        get_spec("resnet50")


def test_registry_refuses_duplicates() -> None:
    spec = get_spec("lenet")
    with pytest.raises(ValueError, match="already registered"):
        register_model(spec)


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_facts(name: str) -> None:
    spec = get_spec(name)
    model = get_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *spec.input_shape))
    assert out.shape == (2, 7)
    assert len(spec.mean) == len(spec.std) == spec.input_shape[0]
    assert len(spec.class_names) == spec.num_classes
    assert 0 < spec.atol < 1e-2 and 0 < spec.rtol < 1e-2


@pytest.mark.parametrize("name", sorted(SEED_NAMES))
def test_seed_parameter_names(name: str) -> None:
    keys = set(get_model(name).state_dict())
    missing = [k for k in SEED_NAMES[name] if k not in keys]
    assert not missing


def test_lenet_is_the_seed_network_without_activations() -> None:
    model = get_model("lenet")
    kinds = [type(m) for m in model.modules() if not isinstance(m, nn.Sequential | A.lenet.LeNet)]
    assert kinds == [
        nn.Conv2d,
        nn.MaxPool2d,
        nn.Conv2d,
        nn.MaxPool2d,
        nn.Linear,
        nn.Linear,
        nn.Linear,
    ]
    assert model.layer1.conv1.padding == (1, 1) and model.layer2.conv2.kernel_size == (5, 5)


def test_alexnet_feature_map_is_256x5x5() -> None:
    with torch.no_grad():
        feats = get_model("alexnet").features(torch.zeros(1, 3, 224, 224))
    assert feats.shape == (1, 256, 5, 5)


def test_mnist_cnn_feature_map_is_2048() -> None:
    model = get_model("mnist_cnn").eval()
    with torch.no_grad():
        x = torch.zeros(1, 1, 28, 28)
        x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    assert x.flatten(1).shape[1] == 2048
    assert [m.out_features for m in model.fc if isinstance(m, nn.Linear)] == [1024, 128, 10]


def test_vgg_initialises_weights_like_torchvision() -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        model = get_model("vgg11_bn")
    linear = model.classifier[0]
    weight, bias = linear.weight.detach(), linear.bias.detach()
    assert float(bias.abs().max()) == 0.0
    assert abs(float(weight.std()) - 0.01) < 1e-3
    bn = model.features[1]
    assert float(bn.weight.detach().min()) == 1.0 and float(bn.bias.detach().abs().max()) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "vgg11_bn"])
def test_torchvision_vgg_weights_load_and_match(name: str) -> None:
    import torchvision

    torch.manual_seed(1)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    ours = get_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def test_user_spec_reports_labels() -> None:
    spec = ModelSpec("x", lambda **_: nn.Identity(), (1, 2, 2), (0.0,), (1.0,), 3, ("a", "b", "c"))
    assert spec.labels() == ["a", "b", "c"]
    assert spec.labels(2) == ["0", "1"]
