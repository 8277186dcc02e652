"""Wide residual networks (Zagoruyko & Komodakis, 2016), as used by NAD.

Pre-activation basic blocks, widths 16 / 16k / 32k / 64k, strides 1 / 2 / 2, no dropout by default.
Module names match the original NAD repository's `models/wresnet.py`, so its checkpoints load here.
`forward` returns the outputs of the three residual groups (before the final BN-ReLU), which are
what attention distillation aligns, followed by the logits. Inputs are images scaled to [0, 1].
"""
import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval


class BasicBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes and stride == 1
        # A 1x1 projection on the shortcut only where the shape changes.
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        # As in the original: where the shape changes, the shortcut also sees the pre-activated input.
        shortcut = x if self.equal_in_out else self.convShortcut(pre)
        return shortcut + out


class NetworkBlock(nn.Module):
    """One residual group: `nb_layers` blocks, the first of which may change width and stride."""

    def __init__(self, nb_layers, in_planes, out_planes, stride, drop_rate=0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
            for i in range(nb_layers)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth=16, num_classes=10, widen_factor=1, drop_rate=0.0):
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        self.nChannels = widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.data.zero_()

    @torch.no_grad()
    def inference_copy(self):
        """A copy for evaluation with each block's conv1 -> bn2 folded into one convolution (eval-mode BN is
        an affine map per channel): one of a block's five elementwise passes over its activations gone. The
        other BNs follow an addition, so they stay. Same outputs to float rounding; the model itself is
        left alone."""
        fused = copy.deepcopy(self).eval()
        for block in fused.modules():
            if isinstance(block, BasicBlock):
                block.conv1, block.bn2 = fuse_conv_bn_eval(block.conv1, block.bn2), nn.Identity()
        if self.conv1.weight.is_contiguous(memory_format=torch.channels_last):
            fused = fused.to(memory_format=torch.channels_last)  # the folded weights come out contiguous
        return fused

    def forward(self, x):
        activation1 = self.block1(self.conv1(x))
        activation2 = self.block2(activation1)
        activation3 = self.block3(activation2)
        out = F.relu(self.bn1(activation3))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return activation1, activation2, activation3, self.fc(out)
