"""Attention operators and loss on hand-computed tensors, and the gradient guard."""
import pytest
import torch

import at
from defenses.nad import distillation_loss as nad_loss
from models import build_model


def fm():
    # B=1, C=2, H=1, W=2: channel 0 = [1, -2], channel 1 = [3, 0]
    return torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]]]])


def test_attention_operators():
    assert torch.equal(at.attention(fm(), kind='sum'), torch.tensor([[[4.0, 2.0]]]))
    assert torch.equal(at.attention(fm(), p=2, kind='sum_p'), torch.tensor([[[10.0, 4.0]]]))
    assert torch.equal(at.attention(fm(), p=2, kind='mean_p'), torch.tensor([[[5.0, 2.0]]]))
    assert torch.equal(at.attention(fm(), p=3, kind='sum_p'), torch.tensor([[[28.0, 8.0]]]))


def test_normalised_map_has_unit_norm():
    am = at.normalized_attention(fm())
    norm = (10.0 ** 2 + 4.0 ** 2) ** 0.5
    assert torch.allclose(am, torch.tensor([[10.0, 4.0]]) / (norm + 1e-6))


def test_loss_forms_by_hand():
    s = fm()
    t = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]]]])       # teacher map [0, 1] -> normalised ~[0, 1]
    a_s = torch.tensor([10.0, 4.0]) / ((116.0 ** 0.5) + 1e-6)
    a_t = torch.tensor([0.0, 1.0]) / (1.0 + 1e-6)
    diff = a_s - a_t
    assert at.at_loss(s, t, form='code').item() == pytest.approx(diff.pow(2).mean().item(), rel=1e-6)
    assert at.at_loss(s, t, form='paper').item() == pytest.approx(diff.norm().item(), rel=1e-6)
    assert at.at_loss(s, s).item() == pytest.approx(0.0, abs=1e-12)
    assert at.AT(2.0)(s, t).item() == pytest.approx(at.at_loss(s, t).item())


def test_attention_loss_sends_gradient_into_the_student():
    """Guards the original's year-long bug: attention terms detached, so 'NAD' was fine-tuning."""
    torch.manual_seed(0)
    student, teacher = build_model('WRN-16-1'), build_model('WRN-16-1').eval()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    at_only = nad_loss(teacher, (500, 1000, 1000), 2.0, 'sum_p', 'code')(student, x, y) \
        - torch.nn.functional.cross_entropy(student(x)[-1], y)
    assert at_only.item() > 0
    at_only.backward()
    grad = student.block1.layer[0].conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0       # group-1 weights get an attention gradient
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen


def test_all_betas_zero_is_cross_entropy():
    torch.manual_seed(0)
    student = build_model('WRN-16-1')
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = nad_loss(build_model('WRN-16-1'), (0, 0, 0), 2.0, 'sum_p', 'code')(student, x, y)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(student(x)[-1], y).item())
