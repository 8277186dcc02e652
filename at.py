"""Attention operators (Zagoruyko & Komodakis, 2017) and the NAD attention distillation loss.

For an activation F in R^{B x C x H x W}:
  A_sum      = sum_c |F_c|
  A^p_sum    = sum_c |F_c|^p        (NAD's default, p = 2)
  A^p_mean   = (1/C) sum_c |F_c|^p
and, for the paper's Table 8 comparison, 'activation': the raw feature map itself (no channel pooling).
"""
import torch

ATTENTIONS = ('sum', 'sum_p', 'mean_p', 'activation')


def attention(fm, p=2.0, kind='sum_p'):
    """B x C x H x W activation -> B x H x W attention map ('activation': the map unchanged)."""
    if kind == 'sum':
        return fm.abs().sum(dim=1)
    if kind == 'sum_p':
        return fm.abs().pow(p).sum(dim=1)
    if kind == 'mean_p':
        return fm.abs().pow(p).mean(dim=1)
    if kind == 'activation':
        return fm
    raise ValueError(f"unknown attention '{kind}' (choose from {', '.join(ATTENTIONS)})")


def normalized_attention(fm, p=2.0, kind='sum_p', eps=1e-6):
    """The attention map flattened and divided by its L2 norm (+eps, as the original), per sample."""
    am = attention(fm.float(), p, kind).flatten(1)
    return am / (am.norm(dim=1, keepdim=True) + eps)


def at_loss(fm_s, fm_t, p=2.0, kind='sum_p', form='code'):
    """Distance between student and teacher normalised attention maps.

    form='code':  mean squared error over batch x H x W (the original code; its betas are tuned for this)
    form='paper': the L2 norm of the difference per sample, averaged over the batch (paper Eq. 2)
    """
    diff = normalized_attention(fm_s, p, kind) - normalized_attention(fm_t, p, kind)
    if form == 'code':
        return diff.pow(2).mean()
    if form == 'paper':
        return diff.norm(dim=1).mean()
    raise ValueError(f"unknown attention loss form '{form}' (choose code or paper)")


class AT(torch.nn.Module):
    """The original repository's interface: AT(p)(fm_s, fm_t)."""

    def __init__(self, p=2.0, kind='sum_p', form='code'):
        super().__init__()
        self.p, self.kind, self.form = p, kind, form

    def forward(self, fm_s, fm_t):
        return at_loss(fm_s, fm_t, self.p, self.kind, self.form)
