"""GTSRB through torchvision's GTSRB class, on a small synthetic folder in its on-disk layout."""
import numpy as np
from PIL import Image

import data_loader as dl


def make_gtsrb(root, classes=43):
    rng = np.random.default_rng(0)
    base = root / 'gtsrb' / 'GTSRB'
    for c in range(classes):
        folder = base / 'Training' / f'{c:05d}'
        folder.mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (40 + k, 37, 3), dtype=np.uint8)).save(folder / f'00000_{k:05d}.ppm')
    test = base / 'Final_Test' / 'Images'
    test.mkdir(parents=True)
    rows = ['Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId']
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (50, 45, 3), dtype=np.uint8)).save(test / f'{i:05d}.ppm')
        rows.append(f'{i:05d}.ppm;45;50;5;5;40;45;{(7 * i) % 43}')
    (root / 'gtsrb' / 'GT-final_test.csv').write_text('\n'.join(rows) + '\n')


def test_gtsrb_loads_resized_uint8_and_caches(tmp_path):
    make_gtsrb(tmp_path)
    data, classes = dl.load_dataset('GTSRB', str(tmp_path))
    assert classes == 43
    x, y = data['train']
    assert x.shape == (86, 3, 32, 32) and x.dtype.is_floating_point is False
    assert sorted(set(y.tolist())) == list(range(43))
    xt, yt = data['test']
    assert xt.shape == (5, 3, 32, 32) and yt.tolist() == [0, 7, 14, 21, 28]
    assert (tmp_path / 'gtsrb_uint8_32.npz').exists()
    again, _ = dl.load_dataset('GTSRB', str(tmp_path))
    assert (again['train'][0] == x).all()
    # Poisoning works on it like on CIFAR-10.
    bd = dl.DatasetBD(x, y, 'gridTrigger', 'all2one', 0, 0.1, num_classes=43)
    assert len(bd.poison_idx) == 8 and (bd.y[bd.poison_idx] == 0).all()
