"""DatasetBD: counts, labels and seeding of the poisoned training set and the attack-success test set."""
import pytest
import torch

import data_loader as dl
from utils import UserError


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 200, (1000, 3, 32, 32), generator=g, dtype=torch.uint8)  # never 255: triggers show
    y = torch.arange(1000) % 10
    return x, y


def triggered(x):
    return (x[:, :, 29:32, 29:32] == dl.grid_trigger(x)[:, :, 29:32, 29:32]).flatten(1).all(1)


def test_all2one_train(data):
    x, y = data
    bd = dl.DatasetBD(x, y, 'gridTrigger', 'all2one', 5, 0.1, mode='train', seed=1)
    idx = bd.poison_idx
    assert len(idx) == 100 and len(bd) == 1000
    assert (bd.y[idx] == 5).all()
    rest = torch.ones(1000, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(bd.y[rest], y[rest]) and torch.equal(bd.x[rest], x[rest])
    assert triggered(bd.x[idx]).all() and not triggered(bd.x[rest]).any()


def test_poisoning_is_seeded(data):
    x, y = data
    a = dl.DatasetBD(x, y, inject_portion=0.1, seed=3).poison_idx
    assert torch.equal(a, dl.DatasetBD(x, y, inject_portion=0.1, seed=3).poison_idx)
    assert not torch.equal(a, dl.DatasetBD(x, y, inject_portion=0.1, seed=4).poison_idx)


def test_all2all_train_relabels_to_next_class(data):
    x, y = data
    bd = dl.DatasetBD(x, y, 'gridTrigger', 'all2all', 5, 0.2, mode='train')
    assert len(bd.poison_idx) == 200
    assert torch.equal(bd.y[bd.poison_idx], (y[bd.poison_idx] + 1) % 10)


def test_clean_label_touches_only_target_images_and_keeps_labels(data):
    x, y = data
    bd = dl.DatasetBD(x, y, 'gridTrigger', 'cleanLabel', 3, 0.05, mode='train')
    assert len(bd.poison_idx) == 50                      # 5% of the set, all from the 100 target-class images
    assert (y[bd.poison_idx] == 3).all()
    assert torch.equal(bd.y, y)
    assert triggered(bd.x[bd.poison_idx]).all() and triggered(bd.x).sum() == 50


@pytest.mark.parametrize('target_type', ['all2one', 'cleanLabel'])
def test_test_set_is_triggered_non_target_images_labelled_target(data, target_type):
    x, y = data
    bd = dl.DatasetBD(x, y, 'gridTrigger', target_type, 5, mode='test')
    assert len(bd) == 900 and (bd.y == 5).all() and triggered(bd.x).all()
    assert torch.equal(bd.x, dl.grid_trigger(x[y != 5]))


def test_all2all_test_set_is_every_image_labelled_next(data):
    x, y = data
    bd = dl.DatasetBD(x, y, 'gridTrigger', 'all2all', 5, mode='test')
    assert len(bd) == 1000 and torch.equal(bd.y, (y + 1) % 10)


def test_clean_subset_is_seeded_fraction(data):
    x, y = data
    xs, ys = dl.clean_subset(x, y, 0.05, seed=0)
    assert len(ys) == 50 and xs.shape == (50, 3, 32, 32)
    assert torch.equal(dl.clean_subset(x, y, 0.05, seed=0)[1], ys)
    assert not torch.equal(dl.clean_subset(x, y, 0.05, seed=1)[0], xs)


def test_unknown_target_type_is_a_user_error(data):
    with pytest.raises(UserError, match='target type'):
        dl.DatasetBD(*data, target_type='all2some')
