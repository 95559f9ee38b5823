"""Models the lab trains: the MNIST-1D reference MLP and CNN, a small image CNN, CIFAR ResNets.

``build_model(name, task)`` checks that the model fits the task's input shape *before* building
it, so a bad study file fails with one clear :class:`~lrlab.errors.ConfigError` instead of a
shape error deep inside the first forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from lrlab.errors import ConfigError, LrlabError, one_line, unknown_name_error

# --------------------------------------------------------------------------------------------
# MNIST-1D reference models (greydanus/mnist1d, notebooks/models.py)


class MNIST1DMLP(nn.Module):
    """The MNIST-1D repo's ``MLPBase``: two hidden layers of 100 ReLU units.

    Exactly as in the reference code, the second hidden layer is residual,
    ``h = h + relu(W2 h)``, so that results are comparable with the MNIST-1D benchmarks.
    Inputs of any shape are flattened.
    """

    def __init__(self, input_size: int, num_classes: int, hidden: int = 100):
        super().__init__()
        self.linear1 = nn.Linear(input_size, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear1(x.flatten(1)).relu()
        h = h + self.linear2(h).relu()
        return self.linear3(h)


def conv1d_out_len(length: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a Conv1d (dilation 1), the formula from the PyTorch docs."""
    return (length + 2 * padding - kernel) // stride + 1


class MNIST1DCNN(nn.Module):
    """The MNIST-1D repo's ``ConvBase``: three stride-2 Conv1d layers of 25 channels, ReLU, and
    a linear classifier on the flattened features.

    Kernels are 5, 3, 3 with padding 1 (as in the reference code): a length-40 signal becomes
    19, 10, then 5 positions, i.e. the reference ``linear_in = 25 * 5 = 125``. Other lengths work;
    the classifier's width is computed from them.
    """

    def __init__(self, length: int, num_classes: int, channels: int = 25):
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.linear = nn.Linear(channels * self.out_len(length), num_classes)

    @staticmethod
    def out_len(length: int) -> int:
        """Positions left after the three convolutions (<= 0: the signal is too short)."""
        n = conv1d_out_len(length, 5, 2, 1)
        n = conv1d_out_len(n, 3, 2, 1) if n > 0 else n
        return conv1d_out_len(n, 3, 2, 1) if n > 0 else n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], 1, x.shape[-1])
        h = self.conv1(h).relu()
        h = self.conv2(h).relu()
        h = self.conv3(h).relu()
        return self.linear(h.flatten(1))


# --------------------------------------------------------------------------------------------
# A small CNN for 28x28 images


class SmallCNN(nn.Module):
    """Two conv(3x3, pad 1) + ReLU + 2x2 max-pool stages (32 then 64 channels), a 128-unit
    hidden layer and a linear classifier: the usual small MNIST/Fashion-MNIST CNN.

    Designed for 1x28x28 (28 -> 14 -> 7); any ``C x H x W`` with H, W >= 4 works.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (h // 4) * (w // 4), 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------------------------
# CIFAR ResNets (He et al. 2016, section 4.2)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity shortcut.

    Where the block halves the resolution and widens the channels, the shortcut is the paper's
    **option A** (the one it uses on CIFAR-10): subsample by 2 and zero-pad the new channels, so
    every shortcut is parameter-free and the parameter counts match the paper's table
    (0.27M / 0.85M / 1.7M for ResNet-20 / 56 / 110).
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.extra_channels = c_out - c_in

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR: a 3x3 conv to 16 channels, three stages of ``n`` basic blocks
    with 16, 32, 64 channels (stages 2 and 3 start with stride 2), global average pooling and a
    linear classifier. Convolutions use He (kaiming normal, fan-out) initialisation, as in the
    paper. Any ``C x H x W`` input works thanks to the global pooling.
    """

    def __init__(self, depth: int, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        if (depth - 2) % 6:
            raise ConfigError(f"ResNet depth must be 6n+2 (20, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for c_out, first_stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, first_stride if i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x)))
        h = self.blocks(h)
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.linear(h)


# --------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: how to build it and which input shapes it accepts."""

    name: str
    description: str
    build: Callable[[tuple[int, ...], int], nn.Module]
    #: returns None when the input shape fits, else a short reason ("needs C x H x W images")
    check: Callable[[tuple[int, ...]], str | None]


def _resnet_builder(depth: int) -> Callable[[tuple[int, ...], int], nn.Module]:
    def build(shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return CifarResNet(depth, cast(tuple[int, int, int], shape), num_classes)

    return build


def _check_any(shape: tuple[int, ...]) -> str | None:
    return None


def _check_1d(shape: tuple[int, ...]) -> str | None:
    if len(shape) == 1 or (len(shape) == 2 and shape[0] == 1):
        if MNIST1DCNN.out_len(shape[-1]) >= 1:
            return None
        return "needs 1-D signals of length >= 3"
    return "needs 1-D signals, shape (L,) or (1, L)"


def _check_image(min_side: int) -> Callable[[tuple[int, ...]], str | None]:
    def check(shape: tuple[int, ...]) -> str | None:
        if len(shape) != 3:
            return "needs images, shape (C, H, W)"
        if min(shape[1:]) < min_side:
            return f"needs images of at least {min_side}x{min_side} pixels"
        return None

    return check


MODELS: dict[str, ModelInfo] = {
    "mlp": ModelInfo(
        "mlp",
        "MNIST-1D reference MLP: 2 hidden layers of 100 ReLU units (2nd residual)",
        lambda shape, k: MNIST1DMLP(math.prod(shape), k),
        _check_any,
    ),
    "cnn": ModelInfo(
        "cnn",
        "MNIST-1D reference CNN (ConvBase): 3 stride-2 Conv1d layers of 25 channels + linear",
        lambda shape, k: MNIST1DCNN(shape[-1], k),
        _check_1d,
    ),
    "cnn28": ModelInfo(
        "cnn28",
        "small 2-stage CNN (32, 64 channels, max-pool) + 128-unit MLP, for 28x28 images",
        lambda shape, k: SmallCNN(cast(tuple[int, int, int], shape), k),
        _check_image(4),
    ),
    **{
        f"resnet{d}": ModelInfo(
            f"resnet{d}",
            f"CIFAR ResNet-{d} (He et al. 2016, option A shortcuts)",
            _resnet_builder(d),
            _check_image(4),
        )
        for d in (20, 56, 110)
    },
}


def check_model(name: str, task) -> ModelInfo:
    """Check, without building anything, that model ``name`` exists and fits ``task`` (a Task,
    a TaskInfo or a task name); return its registry entry. Raises ConfigError otherwise."""
    info = MODELS.get(name) if isinstance(name, str) else None
    if info is None:
        raise unknown_name_error("model", name, MODELS)
    task = _task_like(task)
    shape = tuple(int(s) for s in task.input_shape)
    reason = info.check(shape)
    if reason is not None:
        raise ConfigError(
            f"model {name!r} {reason}; task {task.name!r} has input shape {shape} "
            f"(models that fit: {', '.join(compatible_models(shape))})"
        )
    return info


def build_model(name: str, task) -> nn.Module:
    """Build model ``name`` for ``task`` (a :class:`~lrlab.lab.tasks.Task`, a
    :class:`~lrlab.lab.tasks.TaskInfo`, or a task name), with the task's input shape and number
    of classes. Uses the global torch RNG for initialisation: seed it first for reproducibility.
    """
    info = check_model(name, task)
    task = _task_like(task)
    return info.build(tuple(int(s) for s in task.input_shape), int(task.num_classes))


def _task_like(task):
    if isinstance(task, str):
        from lrlab.lab.tasks import task_info

        return task_info(task)
    return task


def compatible_models(input_shape: tuple[int, ...]) -> list[str]:
    """Names of the registered models that accept ``input_shape``."""
    return [n for n, m in MODELS.items() if m.check(tuple(input_shape)) is None]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_any_model(name: str, task, *, code_dir: str | None = None) -> nn.Module:
    """A built-in model by name (:func:`build_model`), or the user's: ``module:attribute`` names
    a class or function called with the :class:`~lrlab.lab.tasks.Task`, returning an
    ``nn.Module``. Uses the global torch RNG: seed it first."""
    from lrlab.lab.contract import is_code_ref
    from lrlab.lab.trial import load_user_callable

    if not is_code_ref(name):
        return build_model(name, task)
    make = load_user_callable(name, "model", code_dir, "the task")
    try:
        model = make(task)
    except LrlabError:
        raise
    except Exception as exc:
        raise LrlabError(f"model: {name}(task) raised {one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model: {name}(task) returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model
