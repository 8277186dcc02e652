"""Neural Cleanse and STRIP: the anomaly rule, the unlearning batches, STRIP's threshold and entropies on
synthetic tensors, and Neural Cleanse on real CIFAR-10: it finds the quick-start model's target and flags
nothing on the clean model."""
import os

import pytest
import torch

from data_loader import BatchLoader, clean_subset
from defenses.neural_cleanse import anomaly, reverse_engineer, unlearning_loss
from defenses.strip import auroc, entropies, threshold_at
from models import select_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_anomaly_flags_only_a_small_outlier():
    norms = torch.tensor([60., 62., 58., 65., 59., 61., 63., 57., 64., 60.])
    index, flagged = anomaly(norms)
    assert flagged == [] and index.max() < 2
    norms[5] = 10.0                                    # one class needs a far smaller trigger: the target
    index, flagged = anomaly(norms)
    assert flagged == [5] and index[5] > 2
    norms[5], norms[2] = 60.0, 200.0                   # a large norm is never flagged
    assert anomaly(norms)[1] == []


def test_unlearning_stamps_the_first_fifth_under_true_labels():
    masks = torch.zeros(2, 1, 4, 4)
    masks[:, :, 0, 0] = 1
    patterns = torch.stack([torch.full((3, 4, 4), 0.25), torch.full((3, 4, 4), 0.75)])
    seen = {}

    def model(x):
        seen['x'] = x
        return (torch.zeros(len(x), 3, requires_grad=True),)
    x, y = torch.ones(10, 3, 4, 4) * 0.5, torch.arange(10) % 3
    unlearning_loss(masks, patterns, 0.2)(model, x, y)
    stamped = seen['x'][:, 0, 0, 0]
    assert stamped.tolist() == [0.25, 0.75] + [0.5] * 8     # two of ten, each flagged trigger in turn
    assert torch.equal(seen['x'][:, :, 1:], x[:, :, 1:])    # only the mask's pixel changes


def test_strip_threshold_gives_the_stated_false_rejection_rate():
    h = torch.rand(1250, generator=torch.Generator().manual_seed(0)) * 3
    for frr in (0.01, 0.05, 0.2):
        rejected = (h < threshold_at(h, frr)).float().mean().item()
        assert frr - 1 / len(h) <= rejected <= frr


class CornerTrigger(torch.nn.Module):
    """Class 0 with certainty when the top-left pixel is white; otherwise logits from the image's mean colour."""
    def forward(self, x):
        white = x[:, :, 0, 0].mean(1) > 0.99
        logits = 20 * torch.cos(x.mean((2, 3)) @ torch.arange(1., 31.).view(3, 10))
        return (torch.where(white[:, None], torch.eye(10)[0] * 50, logits),)


def test_strip_entropy_is_low_for_triggered_inputs():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 256, (20, 3, 8, 8), generator=g, dtype=torch.uint8)
    triggered = clean.clone()
    triggered[:, :, 0, 0] = 255                        # survives superimposition: 255 + anything saturates
    overlays = torch.randint(0, 256, (50, 3, 8, 8), generator=g, dtype=torch.uint8)
    h_clean = entropies(CornerTrigger(), clean, overlays, 10, torch.device('cpu'))
    h_triggered = entropies(CornerTrigger(), triggered, overlays, 10, torch.device('cpu'))
    assert h_triggered.max() < 0.01 < h_clean.min()
    assert auroc(h_clean, h_triggered) == 1.0 and auroc(h_triggered, h_clean) == 0.0
    assert auroc(h_clean, h_clean) == pytest.approx(0.5)


@pytest.mark.e2e
@pytest.mark.parametrize('model_file,target,ratio,batch', [('s_net/WRN-16-1-S-model_best.pth.tar', 5, 0.02, 16),
                                                           ('clean/WRN-16-1-clean.pth.tar', None, 0.04, 32)])
def test_neural_cleanse_flags_the_quick_start_target_and_nothing_on_the_clean_model(cifar, model_file, target, ratio,
                                                                                     batch):
    """A short reverse-engineering: three epochs, about 190 steps, each over all ten classes. The clean model
    gets 2,000 clean images in batches of 32: its largest anomaly index is 0.93 (1.50 at seed 1; two epochs
    reach 1.86, too near 2 to test; the full 20-epoch search: 1.39). 1,000 images in batches of 16, half the
    work, are enough for the backdoored model (class 5 flagged alone at 5.19; 5.69 with the 2,000), but not
    for the clean one (seed 1 then flags class 6 at 2.99)."""
    x, y = clean_subset(*cifar['train'], ratio, seed=0)
    model = select_model('WRN-16-1', 10, os.path.join(ROOT, 'weight', model_file))[0]
    loader = BatchLoader(x, y, batch, torch.device('cpu'), shuffle=True, seed=0)
    masks, patterns, norms, success = reverse_engineer(model, loader, 10, torch.device('cpu'), None, epochs=3)
    index, flagged = anomaly(norms, success)
    if target is None:
        assert flagged == [] and index.max() < 2, index
    else:
        assert flagged == [target] and index[target] > 2, index
    assert success.min() >= 0.99 and masks.shape == (10, 1, 32, 32) and patterns.shape == (10, 3, 32, 32)
    assert 0 <= masks.min() and masks.max() <= 1
