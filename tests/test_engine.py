"""The one training loop (utils.engine.fit) and its schedules, on a tiny model and synthetic tensors:
the lr each step gets, which epochs are measured and in what precision, and the keep rules."""
import math

import pytest
import torch
import torch.nn.functional as F

from utils.engine import cosine_per_epoch, fit, step_schedule, warmup_linear

CPU = torch.device('cpu')


def test_schedules():
    code = step_schedule(0.1, [2], 0.1)                  # the authors' code: 0.1 for epochs 0-1, then 0.01
    assert [code(t) for t in (0, 1.99, 2, 19.5)] == [0.1, 0.1, pytest.approx(0.01), pytest.approx(0.01)]
    paper = step_schedule(0.1, [2, 4, 6, 8], 0.1)
    assert paper(9.5) == pytest.approx(1e-5)
    zoo = warmup_linear(0.1, 1.0, 10)
    assert [zoo(t) for t in (0.5, 1.0, 5.5, 10.0)] == [pytest.approx(0.05), 0.1, pytest.approx(0.05), 0.0]
    mcr = cosine_per_epoch(0.01, 4)
    assert mcr(0.7) == 0.01 and mcr(1.5) == pytest.approx(0.005 * (1 + math.cos(math.pi / 4)))


class Tiny(torch.nn.Module):
    """Returns (logits,) as the WRNs return (group activations..., logits)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return (self.fc(x),)


def setting(lrs_seen):
    torch.manual_seed(0)
    model = Tiny()
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    loader = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]          # 3 steps an epoch
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)

    def loss_fn(m, xb, yb):
        lrs_seen.append(optimizer.param_groups[0]['lr'])
        return F.cross_entropy(m(xb)[-1], yb)
    return model, loader, loss_fn, optimizer


def test_fit_sets_the_lr_every_step_and_measures_the_last_epoch_in_float32(capsys):
    lrs, calls = [], []
    model, loader, loss_fn, optimizer = setting(lrs)

    def measure(dtype):
        calls.append(dtype)
        return {'acc': 50.0, 'asr': 10.0, 'ra': 40.0, 'eval_seconds': 0.0}
    rows, kept, _ = fit(model, loader, loss_fn, optimizer, 4, lambda t: t, CPU, torch.bfloat16,
                        measure=measure, every=2)
    assert lrs == pytest.approx([e + s / 3 for e in range(4) for s in range(3)])
    assert calls == [torch.bfloat16, None]                        # epochs 2 and 4; the last in float32
    assert [r['acc'] for r in rows] == [None, 50.0, None, 50.0] and kept is rows[-1]
    assert [r['lr'] for r in rows] == [0.5, 1.5, 2.5, 3.5]        # each epoch's midpoint
    assert len([l for l in capsys.readouterr().out.splitlines() if l.startswith('epoch')]) == 4


def test_fit_keeps_the_oracle_epoch_and_measures_it_again_in_float32():
    model, loader, loss_fn, optimizer = setting([])
    scores = iter([(60.0, 50.0), (70.0, 5.0), (75.0, 40.0), None])   # epoch 2 has the best ACC - ASR

    def measure(dtype):
        acc_asr = next(scores) or (69.0, 6.0)                          # the kept epoch, measured again
        return {'acc': acc_asr[0], 'asr': acc_asr[1], 'ra': None}
    rows, kept, state = fit(model, loader, loss_fn, optimizer, 3, lambda t: 0.1, CPU, measure=measure, keep='oracle')
    assert kept['epoch'] == 2 and (kept['acc'], kept['asr']) == (69.0, 6.0)
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)    # the model is the kept epoch's


def test_fit_stops_when_the_holdout_accuracy_stops_improving():
    model, loader, loss_fn, optimizer = setting([])
    holdout = [(torch.randn(6, 4), torch.randint(0, 3, (6,)))]
    rows, kept, _ = fit(model, loader, loss_fn, optimizer, 50, lambda t: 0.0, CPU, keep='holdout',
                        holdout=holdout, patience=2)                   # lr 0: the held-out accuracy never moves
    assert len(rows) == 3 and kept['epoch'] == 1


def test_amp_auto_is_float32_on_cuda_and_off_is_float32_everywhere():
    from utils.runtime import autocast_dtype
    assert autocast_dtype(torch.device('cuda'), 'auto') is None     # measured faster for WRN-16-1 (no GPU needed)
    assert autocast_dtype(torch.device('cpu'), 'off') is None
    assert autocast_dtype(torch.device('cpu'), 'on') == torch.bfloat16


def test_cuda_graphs_run_only_on_cuda_in_float32_for_a_capturable_loss_and_say_why_not(capsys):
    from defenses import DEFENSES
    from utils.runtime import cuda_graphs
    from types import SimpleNamespace
    cuda = torch.device('cuda')                                      # deciding needs no GPU
    args = SimpleNamespace(cuda_graphs='off')
    assert not cuda_graphs(args, cuda, None, True) and capsys.readouterr().out == ''   # not asked: silent
    args = SimpleNamespace(cuda_graphs='on')
    assert cuda_graphs(args, cuda, None, True) and capsys.readouterr().out == '' and args.cuda_graphs == 'on'
    for device, dtype, capturable, why in ((CPU, None, True, 'not on CUDA'), (cuda, torch.bfloat16, True, 'autocast'),
                                           (cuda, None, False, 'cannot be captured')):
        args = SimpleNamespace(cuda_graphs='on')
        assert not cuda_graphs(args, device, dtype, capturable)
        out = capsys.readouterr().out
        assert out.startswith('cuda graphs: off (') and why in out, out
        assert args.cuda_graphs == 'off'                             # the record says what ran
    # pure functions of the model's (and teacher's) outputs; mixup draws its lambda on the host, ARGD has
    # parameters of its own, fine-pruning masks gradients by hooks: those stay eager
    assert {name for name, d in DEFENSES.items() if d.capturable} == {'finetune', 'nad', 'kd', 'twostage', 'cutout'}


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a GPU (the CPU runs the eager loop)')
@pytest.mark.parametrize('benchmark', [False, True])
def test_a_captured_step_trains_as_the_eager_loop_does(monkeypatch, benchmark):
    """NAD's loss on WRN-16-1 (SGD with Nesterov momentum and weight decay), 4 full batches and a partial one
    an epoch, the lr dropping after the first, evaluated between epochs, then a second fit on the same model
    (as iterative NAD does): the same losses, weights and batch-norm statistics as the eager loop, with every
    full batch replayed and every partial one eager. Deterministic kernels: to float32 rounding; cuDNN's
    benchmark mode, as real runs use: a looser tolerance (it may pick other kernels)."""
    from defenses.nad import distillation_loss
    from utils.engine import CapturedStep, accuracy
    device = torch.device('cuda')
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', benchmark)
    monkeypatch.setattr(torch.backends.cudnn, 'deterministic', not benchmark)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)      # as utils.runtime.resolve_device
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    calls = {'replay': 0, 'eager': 0}
    replay, eager = torch.cuda.CUDAGraph.replay, CapturedStep.eager

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(torch.cuda.CUDAGraph, 'replay', counted('replay', replay))
    monkeypatch.setattr(CapturedStep, 'eager', counted('eager', eager))

    def train(graphs):
        student, teacher = randomised_wrn().to(device), randomised_wrn().to(device).eval().requires_grad_(False)
        with torch.no_grad():
            for p in teacher.parameters():
                p.mul_(1.1)                                          # a teacher unlike the student
        torch.manual_seed(1)
        x, y = torch.rand(68, 3, 32, 32, device=device), torch.randint(0, 10, (68,), device=device)
        loader = [(x[i:i + 16].contiguous(memory_format=torch.channels_last), y[i:i + 16]) for i in range(0, 68, 16)]
        loss_fn = distillation_loss(teacher, (500.0, 1000.0, 1000.0), 2.0, 'sum_p', 'code')
        measure = lambda dtype: {'acc': accuracy(student, loader, device), 'asr': 0.0, 'ra': None}
        losses = []
        for epochs in (2, 1):
            optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
            rows = fit(student, loader, loss_fn, optimizer, epochs, step_schedule(0.05, [1], 0.1), device,
                       measure=measure, cuda_graphs=graphs)[0]
            losses += [r['loss'] for r in rows]
        return losses, student.state_dict()

    (eager_losses, eager_state) = train(False)
    assert calls == {'replay': 0, 'eager': 0}
    (captured_losses, captured_state) = train(True)
    assert calls == {'replay': 12, 'eager': 3}                       # 3 epochs of 4 full batches and 1 partial
    rtol, atol = (1e-3, 1e-4) if benchmark else (1e-5, 1e-6)
    assert captured_losses == pytest.approx(eager_losses, rel=rtol)
    for k in eager_state:
        assert torch.allclose(captured_state[k].double(), eager_state[k].double(), rtol=rtol, atol=atol), k


def randomised_wrn():
    """WRN-16-1 with batch-norm statistics and affine terms far from their initial values, so that folding
    them into the convolutions is exercised."""
    from models import build_model
    torch.manual_seed(0)
    model = build_model('WRN-16-1')
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_(0, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_(1.0, 0.2)
        bn.bias.data.normal_(0.0, 0.2)
    return model.to(memory_format=torch.channels_last)


def test_the_folded_evaluation_copy_computes_what_the_model_computes_and_leaves_it_alone():
    model = randomised_wrn().eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    folded = model.inference_copy()
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == 7   # 13 BNs, 6 folded
    with torch.no_grad():
        for ours, theirs in zip(folded(x), model(x)):
            assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_the_evaluator_folds_in_float32_only():
    """Under bfloat16 autocast folding would move outputs by up to 4e-3, and the epoch or pruning ratio picked
    on such measurements with them: there the evaluator runs the model itself, bit for bit."""
    from utils.engine import predictions
    model = randomised_wrn().eval()
    batches = [(torch.rand(8, 3, 32, 32).contiguous(memory_format=torch.channels_last), torch.zeros(8, dtype=torch.long))]
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        plain = model(batches[0][0])[-1].argmax(1)
    assert torch.equal(predictions(model, batches, CPU, torch.bfloat16)[0], plain)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))            # a hooked model is not copied either
    predictions(model, batches, CPU)
    assert calls == [1]


def test_evaluating_between_epochs_leaves_the_trained_weights_bit_identical():
    """The evaluator works on a folded copy: measuring every epoch or never trains the same weights."""
    from utils.engine import accuracy, cross_entropy_loss

    def train(measure_every):
        model = randomised_wrn()
        torch.manual_seed(1)
        x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
        loader = [(x[i:i + 8].contiguous(memory_format=torch.channels_last), y[i:i + 8]) for i in range(0, 32, 8)]
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        measure = lambda dtype: {'acc': accuracy(model, loader, CPU), 'asr': 0.0, 'ra': None}
        fit(model, loader, cross_entropy_loss, optimizer, 2, lambda t: 0.05, CPU, measure=measure, every=measure_every)
        return model.state_dict()

    every, last_only = train(1), train(0)
    assert all(torch.equal(every[k], last_only[k]) for k in every)
