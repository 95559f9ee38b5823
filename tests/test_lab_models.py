"""Models: output shapes on matching inputs, reference architectures, compatibility errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrlab.errors import ConfigError
from lrlab.lab import models as M
from lrlab.lab.tasks import TASKS, TaskInfo


def fake_task(shape, classes=10, name="fake"):
    return TaskInfo(name, tuple(shape), classes, "test task", "test", loader=lambda d, c: {})


MATCHING = [
    ("mlp", (40,), 10),
    ("mlp", (1, 8, 8), 10),
    ("cnn", (40,), 10),
    ("cnn", (1, 40), 10),
    ("cnn28", (1, 28, 28), 10),
    ("cnn28", (3, 32, 32), 100),
    ("resnet20", (3, 32, 32), 10),
    ("resnet20", (1, 28, 28), 10),
    ("resnet56", (3, 32, 32), 100),
    ("resnet110", (3, 32, 32), 10),
]


@pytest.mark.parametrize("name,shape,classes", MATCHING)
def test_output_shape_on_matching_input(name, shape, classes):
    torch.manual_seed(0)
    model = M.build_model(name, fake_task(shape, classes))
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, classes)
    assert torch.isfinite(out).all()


def test_every_registered_model_is_covered_above():
    assert {m for m, _, _ in MATCHING} == set(M.MODELS)


def test_mnist1d_cnn_matches_the_reference_convbase():
    """greydanus/mnist1d ConvBase: kernels 5, 3, 3, stride 2, padding 1, 25 channels, and a
    linear layer on 125 = 25 x 5 features for a length-40 signal."""
    model = M.build_model("cnn", "mnist1d")
    convs = [model.conv1, model.conv2, model.conv3]
    assert [c.kernel_size[0] for c in convs] == [5, 3, 3]
    assert all(c.stride == (2,) and c.padding == (1,) and c.out_channels == 25 for c in convs)
    assert model.linear.in_features == 125
    lengths, h = [], torch.zeros(2, 1, 40)
    for conv in convs:
        h = conv(h)
        lengths.append(h.shape[-1])
    assert lengths == [19, 10, 5]
    assert M.count_parameters(model) == 5210  # the count the reference code prints


def test_mnist1d_mlp_matches_the_reference_mlpbase():
    model = M.build_model("mlp", "mnist1d")
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [100, 100, 10]
    assert M.count_parameters(model) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    # the reference's second hidden layer is residual: h2 = h1 + relu(W2 h1)
    x = torch.randn(4, 40)
    h1 = model.linear1(x).relu()
    expected = model.linear3(h1 + model.linear2(h1).relu())
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("depth,millions", [(20, 0.27), (56, 0.85), (110, 1.7)])
def test_resnet_parameter_counts_match_the_paper(depth, millions):
    model = M.build_model(f"resnet{depth}", "cifar10")
    assert M.count_parameters(model) / 1e6 == pytest.approx(millions, rel=0.025)
    blocks = [m for m in model.modules() if isinstance(m, M.BasicBlock)]
    assert len(blocks) == 3 * (depth - 2) // 6
    # option A: parameter-free shortcuts, so every convolution is a 3x3 one
    assert all(m.kernel_size == (3, 3) for m in model.modules() if isinstance(m, nn.Conv2d))


def test_resnet_option_a_shortcut_pads_channels_with_zeros():
    block = M.BasicBlock(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    sc = block.shortcut(x)
    assert sc.shape == (2, 32, 4, 4)
    torch.testing.assert_close(sc[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(sc[:, 16:]) == 0


def test_cnn28_stage_shapes():
    model = M.build_model("cnn28", "fashion-mnist")
    assert model.features(torch.zeros(1, 1, 28, 28)).shape == (1, 64, 7, 7)


def test_same_seed_same_initialisation():
    torch.manual_seed(7)
    a = M.build_model("resnet20", "cifar10")
    torch.manual_seed(7)
    b = M.build_model("resnet20", "cifar10")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_unknown_model_names_the_allowed_values():
    with pytest.raises(ConfigError) as info:
        M.build_model("resnet21", "cifar10")
    message = str(info.value)
    assert "resnet21" in message and "did you mean" in message
    for name in M.MODELS:
        assert name in message


@pytest.mark.parametrize(
    "name,task", [("cnn", "digits"), ("resnet20", "mnist1d"), ("cnn28", "mnist1d")]
)
def test_incompatible_model_and_task(name, task):
    with pytest.raises(ConfigError) as info:
        M.build_model(name, task)
    message = str(info.value)
    assert name in message and task in message and str(TASKS[task].input_shape) in message


def test_too_small_inputs_are_rejected():
    with pytest.raises(ConfigError, match="at least 4x4"):
        M.build_model("cnn28", fake_task((1, 2, 2)))
    with pytest.raises(ConfigError, match="length >= 3"):
        M.build_model("cnn", fake_task((2,)))


def test_compatible_models():
    assert M.compatible_models((40,)) == ["mlp", "cnn"]
    assert "cnn" not in M.compatible_models((3, 32, 32))
