"""WRN shapes and sizes, and checkpoint loading with its refusals."""
import pytest
import torch

from models import ARCHS, build_model, select_model
from utils import UserError
from utils.checkpoint import load_checkpoint, save_checkpoint


@pytest.mark.parametrize('name', ARCHS)
def test_forward_returns_three_groups_and_logits(name):
    width = int(name.split('-')[2])
    a1, a2, a3, logits = build_model(name)(torch.rand(2, 3, 32, 32))
    assert a1.shape == (2, 16 * width, 32, 32)
    assert a2.shape == (2, 32 * width, 16, 16)
    assert a3.shape == (2, 64 * width, 8, 8)
    assert logits.shape == (2, 10)


def test_wrn_16_1_size():
    n = sum(p.numel() for p in build_model('WRN-16-1').parameters())
    assert n == 175_066                                     # the paper's "about 0.175 M"


def test_the_speed_benchmark_counts_wrn_16_1_flops_as_by_hand():
    """benchmarks.speed's ceiling: the floating-point work per image and of the default main.py."""
    from benchmarks.speed import flops_per_image, main_flops
    cpu, model = torch.device('cpu'), build_model('WRN-16-1')

    def conv(cin, cout, k, side):   # multiply-adds x 2 of a k x k convolution with a side x side output
        return 2 * cin * cout * k * k * side * side
    forward = (conv(3, 16, 3, 32) + 4 * conv(16, 16, 3, 32) + conv(16, 32, 3, 16) + 3 * conv(32, 32, 3, 16)
               + conv(16, 32, 1, 16) + conv(32, 64, 3, 8) + 3 * conv(64, 64, 3, 8) + conv(32, 64, 1, 8) + 2 * 64 * 10)
    trained = 3 * forward - conv(3, 16, 3, 32)       # backward: twice the forward, no gradient for the images
    assert flops_per_image(model, cpu, False) == forward == 53_314_816
    assert flops_per_image(model, cpu, True) == trained
    # 10 epochs of 2,500 images (student trained, teacher forward); 11 evaluations of 10,000 + 9,000 images
    assert main_flops(torch.arange(10).repeat(1000), cpu) == 25_000 * (trained + forward) + 11 * 19_000 * forward


def test_unknown_architecture():
    with pytest.raises(UserError, match='unknown model'):
        build_model('ResNet-18')
    with pytest.raises(UserError, match='unknown model'):
        build_model('WRN-15-1')


def test_checkpoint_round_trip(tmp_path):
    model = build_model('WRN-16-1')
    path = tmp_path / 'm.pth.tar'
    save_checkpoint(path, model, 'WRN-16-1', 10, epoch=3, acc=80.5, asr=1.5, config={'seed': 7})
    loaded, ckpt = select_model('WRN-16-1', 10, str(path))
    assert ckpt['epoch'] == 3 and ckpt['acc'] == 80.5 and ckpt['config'] == {'seed': 7}
    x = torch.rand(2, 3, 32, 32)
    model.eval(), loaded.eval()
    assert torch.equal(model(x)[-1], loaded(x)[-1])
    assert [p.name for p in tmp_path.iterdir()] == ['m.pth.tar']   # no temp file left behind


def test_bare_state_dict_and_original_key_names_load(tmp_path):
    model = build_model('WRN-16-1')
    torch.save({'module.' + k: v for k, v in model.state_dict().items()}, tmp_path / 'bare.pth')
    select_model('WRN-16-1', 10, str(tmp_path / 'bare.pth'))


@pytest.mark.parametrize('arch,classes,ask_arch,ask_classes', [
    ('WRN-16-2', 10, 'WRN-16-1', 10), ('WRN-16-1', 43, 'WRN-16-1', 10)])
def test_architecture_or_class_mismatch_is_refused(tmp_path, arch, classes, ask_arch, ask_classes):
    path = tmp_path / 'm.pth.tar'
    save_checkpoint(path, build_model(arch, classes), arch, classes)
    with pytest.raises(UserError, match='holds a'):
        select_model(ask_arch, ask_classes, str(path))
    torch.save({'state_dict': build_model(arch, classes).state_dict()}, path)   # no metadata: shapes decide
    with pytest.raises(UserError, match='does not fit'):
        select_model(ask_arch, ask_classes, str(path))


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(UserError, match='not found'):
        load_checkpoint(str(tmp_path / 'nope.tar'))
    bad = tmp_path / 'bad.tar'
    bad.write_bytes(b'not a checkpoint at all')
    with pytest.raises(UserError, match='corrupt'):
        load_checkpoint(str(bad))


def test_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    def failing_save(obj, f):
        f.write(b'partial')
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, 'save', failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / 'x.tar', build_model('WRN-16-1'), 'WRN-16-1', 10)
    assert list(tmp_path.iterdir()) == []


def test_the_folded_evaluator_measures_the_shipped_student_as_the_plain_model_does(cifar):
    """Real CIFAR-10: ACC and ASR of the shipped backdoored WRN-16-1 on 2,000 test images, through the
    evaluator (batch norm folded) and through the plain model, agree to 0.05 points (one image)."""
    import config
    from attacks import trigger_for
    from data_loader import test_loaders
    from utils.engine import evaluate, percent
    args = config.get_arguments().parse_args(['--test_limit', '2000'])
    model, _ = select_model('WRN-16-1', 10, args.s_model)
    model = model.to(memory_format=torch.channels_last).eval()
    clean, triggered = test_loaders(args, cifar, torch.device('cpu'), trigger_for(args))
    ours = evaluate(model, clean, triggered, torch.device('cpu'))
    with torch.inference_mode():
        plain_acc = percent(torch.cat([model(x)[-1].argmax(1) == y for x, y in clean]))
        plain_asr = percent(torch.cat([model(x)[-1].argmax(1) == y for x, y in triggered]))
    assert abs(ours["acc"] - plain_acc) < 0.051 and abs(ours["asr"] - plain_asr) < 0.051
    assert ours['asr'] > 90 and ours['acc'] > 80   # it is the backdoored model, measured
