"""The paper's attacks (Table 3 and its analyses): every trigger by its formula, the named presets, the
clean-label attacks' poisoning, the PGD bound and the TrojanNN reverse-engineering, on small tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

import attacks
import attacks.cl
import attacks.refool
import attacks.trojan
import config
import data_loader as dl
from models import build_model
from utils import UserError


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_sig_trigger_adds_the_sinusoid_to_every_row():
    flat = torch.full((2, 3, 32, 32), 100, dtype=torch.uint8)   # far from 0 and 255: nothing clips
    delta = dl.sig_trigger(flat).float() - 100
    want = torch.tensor([round(20 * math.sin(2 * math.pi * j * 6 / 32)) for j in range(32)], dtype=torch.float32)
    assert torch.equal(delta, want.expand(2, 3, 32, 32))         # the same row profile on every row and channel
    assert delta.max() == 20 and delta.min() == -20


def test_sig_trigger_clips_instead_of_wrapping():
    out = dl.sig_trigger(torch.full((1, 3, 32, 32), 250, dtype=torch.uint8))
    assert out.max() == 255 and out.min() == 230


def test_blend_ratio_is_point_two_of_one_fixed_pattern(images):
    mask = dl._fixed_mask(32, 32).float()
    out = dl.random_pixel_trigger(images).float()
    assert (out - (0.8 * images.float() + 0.2 * mask)).abs().max() <= 0.5
    zero = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    recovered = dl.random_pixel_trigger(zero).float() / 0.2           # the same pattern for every image
    assert (recovered[0] - recovered[1]).abs().max() == 0 and (recovered - mask).abs().max() <= 2.5
    half = dl.get_trigger('randomPixelTrigger', alpha=0.5)(images).float()
    assert (half - (0.5 * images.float() + 0.5 * mask)).abs().max() <= 0.5


@pytest.mark.parametrize('alpha', [0.2, 0.5, 0.8, 1.0])
def test_center_trigger_blends_only_the_centre_square(images, alpha):
    out = dl.get_trigger('centerTrigger', alpha)(images)
    want = ((1 - alpha) * images[:, :, 15:18, 15:18].float() + alpha * dl.CENTER.float()).round().to(torch.uint8)
    assert torch.equal(out[:, :, 15:18, 15:18], want)
    out[:, :, 15:18, 15:18] = images[:, :, 15:18, 15:18]
    assert torch.equal(out, images)                                   # nothing else touched


def smooth_images(n, seed=0):
    """Photo-like test images: random 8 x 8 colour fields upsampled to 32 x 32 (noise has no structure for SSIM)."""
    small = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return (torch.nn.functional.interpolate(small, size=32, mode='bilinear') * 255).round().to(torch.uint8)


def test_refool_reflects_pool_images_deterministically():
    images, pool = smooth_images(16), smooth_images(5, seed=1).float() / 255
    out = attacks.refool.refool_trigger(images, pool)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, attacks.refool.refool_trigger(images, pool))            # the same batch, the same reflections
    assert not torch.equal(out, attacks.refool.refool_trigger(images, pool, seed=1))
    assert (out.float() - images.float()).abs().mean() > 5              # a visible reflection
    black = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)               # on black, only the reflection shows
    assert attacks.refool.refool_trigger(black, pool).float().mean() > 10


def test_refool_keeps_the_image_the_main_layer():
    images, pool = smooth_images(64), smooth_images(5, seed=1).float() / 255
    out = attacks.refool.refool_trigger(images, pool)
    s = attacks.refool.ssim(out.float() / 255, images.float() / 255)
    assert s.median() > 0.6 and (s < 0.99).all()                         # changed, but still the same picture


def test_refool_accepts_only_visible_but_not_dominant_reflections():
    image = smooth_images(3).float() / 255
    reflection = smooth_images(3, seed=1).float() / 255
    invisible = attacks.refool.refool_accepts(image, 0 * image, image)              # SSIM 1
    dominant = attacks.refool.refool_accepts(reflection, reflection, 0.1 * image)   # the reflection is the picture
    assert not invisible.any() and not dominant.any()
    blends = [0.7 * image + w * reflection for w in (0.1, 0.2, 0.3, 0.4, 0.5)]
    assert any(attacks.refool.refool_accepts(b, w * reflection, 0.7 * image).any() for b, w in zip(blends, (0.1, 0.2, 0.3, 0.4, 0.5)))


def test_ssim_matches_its_definition():
    a = smooth_images(4).float() / 255
    assert torch.allclose(attacks.refool.ssim(a, a), torch.ones(4))
    noisy = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    s = attacks.refool.ssim(a, noisy)
    assert torch.allclose(s, attacks.refool.ssim(noisy, a)) and ((s > 0) & (s < 0.95)).all()
    # one 7 x 7 window, computed by hand
    x, y = torch.rand(1, 1, 7, 7, generator=torch.Generator().manual_seed(2)), torch.rand(1, 1, 7, 7)
    mx, my = x.mean(), y.mean()
    vx, vy, cxy = x.var(), y.var(), ((x - mx) * (y - my)).sum() / 48
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    want = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    assert torch.allclose(attacks.refool.ssim(x, y), want.reshape(1), atol=1e-5)


def test_ssim_window_means_are_avg_pool2d_bit_for_bit():
    """Refool's trigger tests each blend's SSIM against thresholds: a window mean one rounding away from
    avg_pool2d's could flip a test and change the reflections of every later image (the shipped models'
    poisoned data). Odd sizes: a last partial chunk of images, windows of 3 and 7, images wider than high, a
    channels-last input."""
    g = torch.Generator().manual_seed(0)
    for n, c, h, w, win in ((37, 15, 32, 32, 7), (5, 3, 9, 12, 3)):
        x = torch.rand(n, c, h, w, generator=g) ** 2.2
        for layout in (x, x.contiguous(memory_format=torch.channels_last)):
            assert torch.equal(attacks.refool.window_mean(layout, win), F.avg_pool2d(x, win, stride=1))


def test_refool_selection_scores_each_candidate():
    class Bright(torch.nn.Module):   # predicts class 0 when the image is bright: a white reflection triggers it
        def forward(self, x):
            score = x.mean((1, 2, 3)) - 0.42
            return (torch.stack([score, -score], 1),)
    images = torch.full((8, 3, 32, 32), 100, dtype=torch.uint8)
    candidates = torch.stack([torch.zeros(3, 32, 32), torch.ones(3, 32, 32)])
    scores = attacks.refool.score_reflections(Bright(), images, candidates, 0, torch.device('cpu'))
    assert scores.tolist() == [0.0, 100.0]


def test_refool_without_its_selected_reflections_says_how_to_make_them(tmp_path):
    with pytest.raises(UserError, match='python -m attacks.refool'):
        attacks.refool.selected_trigger(path=str(tmp_path / 'missing.pt'))


def test_pgd_respects_its_bound_and_raises_the_loss():
    torch.manual_seed(0)
    model = build_model('WRN-16-1').eval()
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (16,))
    adv = attacks.cl.pgd(model, x, y, eps=8 / 255, steps=3, step_size=4 / 255, device=torch.device('cpu'))
    assert adv.dtype == torch.uint8 and (adv.int() - x.int()).abs().max() <= 8
    assert (adv != x).any()
    with torch.no_grad():
        loss = lambda z: torch.nn.functional.cross_entropy(model(z.float() / 255)[-1], y)  # noqa: E731
        assert loss(adv) > loss(x)


def test_clean_label_poisoning_touches_only_target_images_and_keeps_labels(images):
    x = torch.randint(0, 200, (1000, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    y = torch.arange(1000) % 10
    seen = {}

    def perturb(xs, ys):  # record what the attack's PGD hook is given
        seen['y'] = ys
        return xs // 2
    bd = dl.DatasetBD(x, y, 'sigTrigger', 'cleanLabel', 0, 0.08, perturb=perturb)
    assert len(bd.poison_idx) == 80 and (y[bd.poison_idx] == 0).all() and (seen['y'] == 0).all()
    assert torch.equal(bd.y, y)                                        # labels kept
    changed = (bd.x != x).flatten(1).any(1)
    assert torch.equal(torch.nonzero(changed).flatten(), bd.poison_idx)
    assert torch.equal(bd.x[bd.poison_idx], dl.sig_trigger(x[bd.poison_idx] // 2))
    with pytest.raises(UserError, match='only use the 100 images of class 0'):
        dl.DatasetBD(x, y, 'sigTrigger', 'cleanLabel', 0, 0.2)


def test_trojan_reverse_engineering_drives_its_neuron_up(images):
    torch.manual_seed(0)
    model = build_model('WRN-16-1')
    patch, info = attacks.trojan.reverse_engineer_trojan(model, images, steps=30, lr=0.2)
    assert patch.shape == (3, 3, 3) and patch.dtype == torch.int16 and patch.abs().max() <= 255
    assert info['neuron'] == int(model.fc.weight.abs().sum(0).argmax())
    assert info['activation_with_patch'] > info['activation_clean']
    out = dl.trojan_trigger(images, patch)
    assert (out[:, :, 25:28, 25:28] != images[:, :, 25:28, 25:28]).any()
    out[:, :, 25:28, 25:28] = images[:, :, 25:28, 25:28]
    assert torch.equal(out, images)                                   # only the 3x3 patch area changes


def test_missing_trojan_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match='python -m attacks.trojan'):
        attacks.trojan.nn_trigger(str(tmp_path / 'none.pt'))


def test_attack_presets_are_the_papers_table_3():
    entries = attacks.ATTACKS
    rates = {name: entries[name].inject_portion for name in attacks.TABLE3}
    assert rates == {'badnets': 0.10, 'trojan': 0.05, 'blend': 0.10, 'cl': 0.08, 'sig': 0.08, 'refool': 0.08}
    for name in attacks.TABLE3:
        a = config.parse(config.get_badnet_arguments(), ['--attack', name])
        assert a.target_label == 0 and a.trigger_type == entries[name].trigger_type
        assert a.inject_portion == entries[name].inject_portion and a.pgd_eps == (0.15 if name == 'cl' else 0)
        m = config.parse(config.get_arguments(), ['--attack', name])
        assert m.s_model.endswith(f'weight/s_net/WRN-16-1-{name}.pth.tar') and not hasattr(m, 'pgd_eps')
        assert m.t_model.endswith(f'weight/t_net/WRN-16-1-{name}-T.pth.tar')
    assert {entries[n].target_type for n in ('cl', 'sig', 'refool')} == {'cleanLabel'}
    assert entries['all2all'].target_type == 'all2all'
    assert entries['refool_pl'].preset() == {'trigger_type': 'refoolTrigger', 'target_type': 'all2one',
                                             'inject_portion': 0.08, 'target_label': 0}   # BackdoorBench's way
    assert attacks.TABLE1 == (*attacks.TABLE3, 'refool_pl')
    assert ' '.join(attacks.zoo_flags('sig')) == '--attack sig --epochs 15 --weight_decay 0.0001 --cutout_length 16 --seed 0'


def test_the_clean_label_pgd_follows_the_flag_not_the_attack_name():
    # --attack cl is a preset: the same attack spelled as explicit flags runs the same PGD
    spelled = config.parse(config.get_badnet_arguments(), ['--trigger_type', 'fourCornerTrigger', '--target_type',
                                                           'cleanLabel', '--target_label', '0', '--inject_portion',
                                                           '0.08', '--pgd_eps', '0.15'])
    preset = config.parse(config.get_badnet_arguments(), ['--attack', 'cl'])
    keys = ('trigger_type', 'target_type', 'target_label', 'inject_portion', 'pgd_eps', 'pgd_steps', 'pgd_step_size')
    assert [getattr(spelled, k) for k in keys] == [getattr(preset, k) for k in keys]
    assert config.parse(config.get_badnet_arguments(), ['--attack', 'sig']).pgd_eps == 0   # no PGD


def test_explicit_flags_win_over_an_attack_preset():
    a = config.parse(config.get_badnet_arguments(), ['--attack', 'adaptive', '--trigger_alpha', '0.5',
                                                     '--target_label', '3', '--inject_portion', '0.2'])
    assert (a.trigger_type, a.trigger_alpha, a.target_label, a.inject_portion) == ('centerTrigger', 0.5, 3, 0.2)
    assert config.parse(config.get_badnet_arguments(), ['--attack', 'clean']).attack == 'clean'
    with pytest.raises(SystemExit):                                   # not a defense's attack
        config.parse(config.get_arguments(), ['--attack', 'clean'])


def test_fgsm_adversarial_loss_is_plain_ce_at_eps_zero_and_larger_above():
    model = build_model('WRN-16-1').eval()
    x, y = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(16) % 10
    clean = torch.nn.functional.cross_entropy(model(x)[-1], y)
    at_zero = attacks.cl.fgsm_adversarial_loss(0.0, torch.Generator().manual_seed(0))(model, x, y)
    assert torch.allclose(at_zero, clean)
    adversarial = attacks.cl.fgsm_adversarial_loss(8 / 255, torch.Generator().manual_seed(0))(model, x, y)
    assert adversarial > clean                                    # the step goes up the loss
    adversarial.backward()
    assert model.fc.weight.grad.abs().sum() > 0                   # and the model trains on it


def test_cl_attack_runs_its_pgd_against_the_robust_model_and_adv_eps_is_checked():
    args = config.parse(config.get_badnet_arguments(), ['--attack', 'cl'])
    assert args.pgd_model.endswith('weight/clean/WRN-16-1-robust.pth.tar') and args.pgd_eps == 0.15
    assert args.adv_eps == 0.0
    with pytest.raises(UserError, match='adv_eps'):
        config.parse(config.get_badnet_arguments(), ['--adv_eps', '1.5'])


def test_an_attack_is_one_registry_entry(monkeypatch):
    monkeypatch.setitem(attacks.ATTACKS, 'square', attacks.Attack('Square', 'squareTrigger', 'all2one', 0.05,
                                                                  zoo=('--epochs', 15)))
    a = config.parse(config.get_badnet_arguments(), ['--attack', 'square'])
    assert (a.trigger_type, a.target_type, a.inject_portion, a.target_label) == ('squareTrigger', 'all2one', 0.05, 0)
    assert ' '.join(attacks.zoo_flags('square')) == '--attack square --epochs 15 --seed 0'
