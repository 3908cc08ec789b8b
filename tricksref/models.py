"""Small CNNs built from tricksref's own layers, with one switch per trick for ablations.

- ``AlexNetSmall``: the AlexNet layout (Krizhevsky et al., 2012) scaled down to 32x32 inputs: five
  convolutions, local response normalization after the first two, overlapping max pooling, and a
  classifier with dropout. Switches: ``lrn``, ``batchnorm``, ``dropout``.
- ``ResNetSmall``: a CIFAR-style residual network (He et al., 2016). Switches: ``batchnorm``,
  ``zero_init_residual`` (gamma = 0 in the last BN of every block, a trick of the "bag of tricks", He et
  al., 2019), ``resnet_d`` (average-pool the shortcut before its 1x1 convolution, same paper), ``dropout``.

Every switch changes one thing only, so that an ablation toggles exactly one trick at a time. AlexNetSmall is
laid out for ``(N, C, 32, 32)`` images; ResNetSmall takes any size >= 8 (digits at their native 8x8 included).

``norm_layer`` picks the batch-normalization class: tricksref's own ``BatchNorm2d`` by default (the
lecture's Algorithm 1 with its closed-form backward), or ``torch.nn.BatchNorm2d``, the same math and the same
state_dict keys in a fused kernel: a training step of these small models is 1.1 to 1.4 times faster with it on
a CPU (one thread; the larger gain for the smallest model), so the ablations use it.

Initialization: He et al. (2015) normal initialization for every convolution and hidden linear layer, so that
the variance of the activations neither grows nor shrinks through the ReLUs. PyTorch's default (uniform with
a = sqrt(5)) divides the variance by about 6 per layer, and the eight layers of AlexNetSmall without BN then
start with a vanishing signal and do not learn at all with SGD.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ._checks import check_number
from .batchnorm import BatchNorm2d
from .dropout import Dropout
from .lrn import LocalResponseNorm

__all__ = ["AlexNetSmall", "ResNetSmall", "BasicBlock"]


def _check_norm_layer(norm_layer) -> None:
    if not callable(norm_layer):
        raise TypeError(f"norm_layer: expected a BN class such as tricksref.BatchNorm2d or "
                        f"torch.nn.BatchNorm2d, got {type(norm_layer).__name__}")


class AlexNetSmall(nn.Module):
    """AlexNet's layout for small images, built from tricksref's LRN, BatchNorm2d and Dropout.

    Per convolution block: conv -> [BN] -> ReLU -> [LRN] -> [max pool]. The LRN uses the paper's
    hyper-parameters in the paper's convention: n = 5, k = 2, alpha = 1e-4, beta = 0.75.

    Args:
        num_classes: outputs of the last layer. Default: 10.
        in_channels: 1 for grey images, 3 for colour. Default: 1.
        lrn: local response normalization after the first two blocks. Default: True.
        batchnorm: batch normalization after every convolution (bias-free convolutions then). Default: False.
        dropout: the dropout probability before the two hidden fully connected layers; 0 turns it off.
            Default: 0.5.
        width: channels of the first convolution; the others scale with it. Default: 16 (AlexNet has 96;
            this size trains on digits in seconds on a laptop CPU).
        hidden: units of the two hidden fully connected layers. Default: 4 * width.
        norm_layer: the BN class, called with the number of channels. Default: ``tricksref.BatchNorm2d``.

    Shape:
        Input (N, in_channels, H, W), H and W >= 16 (32 gives the 3x3 map the classifier expects without
        resampling); output (N, num_classes).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, *, lrn: bool = True,
                 batchnorm: bool = False, dropout: float = 0.5, width: int = 16, hidden: int | None = None,
                 norm_layer: Callable[[int], nn.Module] = BatchNorm2d):
        super().__init__()
        check_number(num_classes, "num_classes", low=1, integer=True)
        check_number(in_channels, "in_channels", low=1, integer=True)
        check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
        check_number(width, "width", low=1, integer=True)
        hidden = 4 * width if hidden is None else check_number(hidden, "hidden", low=1, integer=True)
        _check_norm_layer(norm_layer)
        self.tricks = {"lrn": lrn, "batchnorm": batchnorm, "dropout": dropout}
        c1, c2, c3 = width, 2 * width, 3 * width

        def block(cin, cout, kernel, *, norm, pool):
            layers = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=not batchnorm)]
            if batchnorm:
                layers.append(norm_layer(cout))
            layers.append(nn.ReLU(inplace=True))
            if norm and lrn:
                layers.append(LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0, convention="alexnet"))
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))  # overlapping pooling, as in AlexNet
            return layers

        self.features = nn.Sequential(
            *block(in_channels, c1, 5, norm=True, pool=True),   # (N, c1, 15, 15)
            *block(c1, c2, 3, norm=True, pool=True),            # (N, c2, 7, 7)
            *block(c2, c3, 3, norm=False, pool=False),
            *block(c3, c3, 3, norm=False, pool=False),
            *block(c3, c2, 3, norm=False, pool=True),           # (N, c2, 3, 3)
            nn.AdaptiveAvgPool2d(3),                            # a no-op at 32x32; other sizes resample
        )

        def maybe_dropout():
            return [Dropout(dropout)] if dropout > 0 else []

        self.classifier = nn.Sequential(
            nn.Flatten(),
            *maybe_dropout(), nn.Linear(c2 * 3 * 3, hidden), nn.ReLU(inplace=True),
            *maybe_dropout(), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not self.head:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # fan_in: forward variance kept
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def head(self) -> nn.Linear:
        """The last layer: what fine-tuning replaces for a new number of classes."""
        return self.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection: ``relu(F(x) + shortcut(x))``."""

    def __init__(self, cin: int, cout: int, stride: int = 1, *, batchnorm: bool = True,
                 resnet_d: bool = False, norm_layer: Callable[[int], nn.Module] = BatchNorm2d):
        super().__init__()

        def norm(c):
            return norm_layer(c) if batchnorm else nn.Identity()

        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=not batchnorm)
        self.bn2 = norm(cout)
        self.relu = nn.ReLU(inplace=True)
        if stride == 1 and cin == cout:
            self.shortcut = nn.Identity()
        elif resnet_d and stride > 1:
            # ResNet-D: a 1x1 convolution with stride 2 ignores 3/4 of the input; pool first instead
            self.shortcut = nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True),
                                          nn.Conv2d(cin, cout, 1, bias=not batchnorm), norm(cout))
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=not batchnorm),
                                          norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetSmall(nn.Module):
    """A small residual network for 32x32 images, with a switch per trick.

    Args:
        num_classes: outputs. Default: 10.
        in_channels: input channels. Default: 1.
        widths: channels of the three stages. Default: (16, 32, 64).
        blocks: residual blocks per stage. Default: (1, 1, 1).
        batchnorm: BN after every convolution. Default: True.
        zero_init_residual: start every block as the identity (gamma = 0 in its last BN). Default: False.
        resnet_d: average-pool the downsampling shortcuts. Default: False.
        dropout: dropout probability before the last layer; 0 turns it off. Default: 0.
        norm_layer: the BN class, called with the number of channels. Default: ``tricksref.BatchNorm2d``.

    Shape:
        Input (N, in_channels, H, W) with H, W >= 8; output (N, num_classes).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, *, widths=(16, 32, 64),
                 blocks=(1, 1, 1), batchnorm: bool = True, zero_init_residual: bool = False,
                 resnet_d: bool = False, dropout: float = 0.0,
                 norm_layer: Callable[[int], nn.Module] = BatchNorm2d):
        super().__init__()
        _check_norm_layer(norm_layer)
        check_number(num_classes, "num_classes", low=1, integer=True)
        check_number(in_channels, "in_channels", low=1, integer=True)
        check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths, blocks: expected sequences of the same non-zero length, got "
                             f"{tuple(widths)} and {tuple(blocks)}")
        self.tricks = {"batchnorm": batchnorm, "zero_init_residual": zero_init_residual,
                       "resnet_d": resnet_d, "dropout": dropout}
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=not batchnorm),
                                  norm_layer(widths[0]) if batchnorm else nn.Identity(),
                                  nn.ReLU(inplace=True))
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(cin, w, stride, batchnorm=batchnorm, resnet_d=resnet_d,
                                         norm_layer=norm_layer))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual and batchnorm:
            for block in self.layers:
                nn.init.zeros_(block.bn2.weight)

    @property
    def head(self) -> nn.Linear:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(x))                  # (N, widths[-1], H/4, W/4)
        return self.fc(self.dropout(self.pool(x).flatten(1)))
