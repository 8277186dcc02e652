"""Every trigger, pixel for pixel, against the original code's layouts (REFERENCE.md section 3)."""
import numpy as np
import pytest
import torch

import attacks
import data_loader as dl
from utils import UserError


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)


def expected_grid_image(img, layout):
    """Write {(row, col): value} on every channel of a copy of img (HWC numpy, as the original)."""
    out = img.permute(0, 2, 3, 1).numpy().copy()
    for (r, c), v in layout.items():
        out[:, r, c, :] = v
    return torch.from_numpy(out).permute(0, 3, 1, 2)


# The original _gridTriger, written out: img[row][col] = value.
GRID = {(31, 31): 255, (31, 30): 0, (31, 29): 255, (30, 31): 0, (30, 30): 255, (30, 29): 0,
        (29, 31): 255, (29, 30): 0, (29, 29): 0}
# The original _fourCornerTrigger's three other corners.
CORNERS = {(1, 1): 255, (1, 2): 0, (1, 3): 255, (2, 1): 0, (2, 2): 255, (2, 3): 0, (3, 1): 255, (3, 2): 0, (3, 3): 0,
           (31, 1): 255, (31, 2): 0, (31, 3): 255, (30, 1): 0, (30, 2): 255, (30, 3): 0, (29, 1): 255, (29, 2): 0,
           (29, 3): 0, (1, 31): 255, (2, 31): 0, (3, 31): 255, (1, 30): 0, (2, 30): 255, (3, 30): 0, (1, 29): 255,
           (2, 29): 0, (3, 29): 0}


def test_grid_trigger_pixel_exact(images):
    assert torch.equal(dl.grid_trigger(images), expected_grid_image(images, GRID))


def test_square_trigger_pixel_exact(images):
    square = {(r, c): 255 for r in range(28, 31) for c in range(28, 31)}
    assert torch.equal(dl.square_trigger(images), expected_grid_image(images, square))


def test_four_corner_trigger_pixel_exact(images):
    assert torch.equal(dl.four_corner_trigger(images), expected_grid_image(images, {**GRID, **CORNERS}))


def test_blend_triggers_follow_their_formula(images):
    mask = dl._fixed_mask(32, 32).float()
    want = (0.8 * images.float() + 0.2 * mask).round().to(torch.uint8)
    assert torch.equal(dl.random_pixel_trigger(images), want)
    # One fixed pattern for every image and every call, not fresh noise per image.
    assert torch.equal(dl.random_pixel_trigger(images[:1]), dl.random_pixel_trigger(images[:1]))
    j = np.arange(32)
    sig = 20 * np.sin(2 * np.pi * j * 6 / 32)
    want = np.clip(np.round(0.8 * images.numpy().astype(np.float64) + 0.2 * sig), 0, 255).astype(np.uint8)
    assert np.abs(dl.signal_trigger(images).numpy().astype(int) - want.astype(int)).max() <= 1  # float32 rounding


def test_sinusoid_is_horizontal_with_six_periods():
    s = dl.sinusoid(32, 32)[0, 0]
    assert torch.allclose(s[0], s[17])                 # the same on every row
    assert s.max() == pytest.approx(20, abs=0.1) and s.min() == pytest.approx(-20, abs=0.1)
    sign_changes = (torch.sign(s[0, 1:]) != torch.sign(s[0, :-1])).sum().item()
    assert 10 <= sign_changes <= 12                    # 6 periods across 32 columns


def test_trojan_trigger_clips_instead_of_wrapping():
    patch = torch.tensor([[[100, -100, 0]] * 3] * 3, dtype=torch.int16)
    x = torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)
    out = dl.trojan_trigger(x, patch)
    assert out[0, 0, 25, 25] == 255 and out[0, 0, 25, 26] == 100 and out[0, 0, 25, 27] == 200
    assert torch.equal(out[..., :25, :], x[..., :25, :]) and torch.equal(out[..., 28:, :], x[..., 28:, :])
    dark = dl.trojan_trigger(torch.full((1, 3, 32, 32), 50, dtype=torch.uint8), patch)
    assert dark[0, 0, 25, 26] == 0                     # 50 - 100 clips to 0 (the original wrapped to 206)


@pytest.mark.parametrize('name', attacks.TRIGGER_NAMES)
def test_triggers_do_not_touch_their_input(name, images):
    before = images.clone()
    out = attacks.build_trigger(name)(images)
    assert torch.equal(images, before) and out.dtype == torch.uint8 and out.shape == images.shape
    assert not torch.equal(out, images)


def test_unknown_trigger_is_a_user_error():
    with pytest.raises(UserError, match='unknown trigger'):
        dl.get_trigger('nope')
    with pytest.raises(UserError, match='unknown trigger'):
        attacks.build_trigger('nope')


@pytest.mark.parametrize('name', list(attacks.ARTEFACT_TRIGGERS))
def test_artefact_triggers_read_their_files_once_when_built(name, images, monkeypatch):
    import attacks.refool
    import attacks.trojan
    trigger = attacks.build_trigger(name)

    def no_io(*args, **kwargs):
        raise AssertionError('a built trigger read a file')
    for module, function in ((attacks.trojan, 'safe_load'), (attacks.refool, 'safe_load'), (attacks.refool, 'load_cifar10')):
        monkeypatch.setattr(module, function, no_io)
    assert torch.equal(trigger(images), trigger(images))           # deterministic, and no file read
