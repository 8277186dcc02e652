"""Batch augmentation on uint8 tensors, and the loader that serves it."""
import torch

import data_loader as dl


def batch(n=16):
    return torch.randint(1, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = batch()
    out = dl.random_crop(x, 4, torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets = set()
    for i in range(len(x)):
        match = [(dy, dx) for dy in range(9) for dx in range(9)
                 if torch.equal(out[i], padded[i, :, dy:dy + 32, dx:dx + 32])]
        assert match, f'image {i} is not a crop of its padded self'
        offsets.add(match[0])
    assert len(offsets) > 1                                # offsets differ between images


def test_flip_mirrors_about_half_the_images():
    x = batch(200)
    out = dl.random_flip(x, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert (flipped | kept).all() and 60 < flipped.sum() < 140


def test_cutout_zeroes_one_square_hole_per_image():
    x = batch(64)
    out = dl.cutout(x, 9, torch.Generator().manual_seed(0))
    holes = (out == 0).all(1)                              # x has no zeros, so zeros are the hole
    for h in holes:
        rows, cols = h.any(1).nonzero().flatten(), h.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 9 and 1 <= len(cols) <= 9
        assert h.sum() == len(rows) * len(cols)            # a rectangle, clipped at the border
    assert any(h.sum() == 81 for h in holes)               # unclipped holes are exactly 9x9


def test_loader_serves_every_image_once_per_epoch_reproducibly():
    x = batch(50)
    y = torch.arange(50)
    loader = dl.BatchLoader(x, y, 16, torch.device('cpu'), shuffle=True, seed=0)
    seen = torch.cat([yb for _, yb in loader])
    assert len(loader) == 4 and sorted(seen.tolist()) == list(range(50))
    assert not torch.equal(seen, y)
    again = torch.cat([yb for _, yb in dl.BatchLoader(x, y, 16, torch.device('cpu'), shuffle=True, seed=0)])
    assert torch.equal(seen, again)
    xb, _ = next(iter(dl.BatchLoader(x, y, 16, torch.device('cpu'))))
    assert xb.dtype == torch.float32 and torch.allclose(xb * 255, x[:16].float())


def test_drop_last():
    loader = dl.BatchLoader(batch(50), torch.arange(50), 16, torch.device('cpu'), drop_last=True)
    assert len(loader) == 3 and all(len(yb) == 16 for _, yb in loader)
