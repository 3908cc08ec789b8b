"""Tests of tricksref.models: shapes, and that each switch toggles exactly its trick."""

import pytest
import torch
from torch import nn

from tricksref import BatchNorm2d, Dropout, LocalResponseNorm
from tricksref.models import AlexNetSmall, BasicBlock, ResNetSmall


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("size", [16, 32, 40])
def test_models_alexnet_output_shape(device, size):
    m = AlexNetSmall(num_classes=7, in_channels=3).to(device)
    assert m(torch.randn(2, 3, size, size, device=device)).shape == (2, 7)


def test_models_alexnet_switches_toggle_one_trick_each():
    base = AlexNetSmall()
    assert count(base, LocalResponseNorm) == 2 and count(base, Dropout) == 2 and count(base, BatchNorm2d) == 0
    assert count(AlexNetSmall(lrn=False), LocalResponseNorm) == 0
    assert count(AlexNetSmall(dropout=0.0), Dropout) == 0
    bn = AlexNetSmall(batchnorm=True)
    assert count(bn, BatchNorm2d) == 5 and count(bn, LocalResponseNorm) == 2
    assert all(c.bias is None for c in bn.modules() if isinstance(c, nn.Conv2d))  # BN's beta is the bias
    lrn = next(m for m in base.modules() if isinstance(m, LocalResponseNorm))
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k, lrn.convention) == (5, 1e-4, 0.75, 2.0, "alexnet")


def test_models_resnet_output_shape_and_head(device):
    m = ResNetSmall(num_classes=3, in_channels=1, blocks=(2, 1, 1)).to(device)
    assert m(torch.randn(4, 1, 32, 32, device=device)).shape == (4, 3)
    assert m.head is m.fc


def test_models_resnet_zero_init_residual_makes_blocks_identity():
    torch.manual_seed(0)
    block = ResNetSmall(zero_init_residual=True).layers[0]  # stride 1, identity shortcut
    block.eval()
    x = torch.randn(2, 16, 8, 8).relu()
    torch.testing.assert_close(block(x), x)
    plain = ResNetSmall(zero_init_residual=False).layers[0].eval()
    assert not torch.allclose(plain(x), x)


def test_models_resnet_d_pools_the_shortcut():
    down = BasicBlock(16, 32, stride=2, resnet_d=True)
    assert isinstance(down.shortcut[0], nn.AvgPool2d)
    assert down.shortcut[1].stride == (1, 1)
    plain = BasicBlock(16, 32, stride=2)
    assert plain.shortcut[0].stride == (2, 2)
    x = torch.randn(2, 16, 9, 9)  # odd sizes: both paths must agree on the output size
    assert down(x).shape == plain(x).shape == (2, 32, 5, 5)


def test_models_without_batchnorm_have_no_bn():
    assert count(ResNetSmall(batchnorm=False), BatchNorm2d) == 0


@pytest.mark.parametrize("kwargs, name", [(dict(num_classes=0), "num_classes"),
                                          (dict(dropout=1.0), "dropout"),
                                          (dict(in_channels=1.5), "in_channels")])
def test_models_reject_bad_arguments(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        AlexNetSmall(**kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        ResNetSmall(**kwargs)
