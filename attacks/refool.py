"""Refool's adversarial selection of reflection images (Liu et al., ECCV 2020, Sec. 3.3), one round:

    python train_badnet.py --attack refool --trigger_type refoolCandidatesTrigger --epochs 10 --seed 0 \
        --output weight/refool/WRN-16-1-refool-candidates.pth.tar    # poisoned with all 200 candidates
    python -m attacks.refool                                        # score each candidate on it, keep the best

Each candidate reflection is scored by that model's success rate on --images non-target *training* images
reflected with that candidate alone (the attacker's own data; the test set is not used). The --keep best
are saved with every score and how they were made to triggers/refool_WRN-16-1.pt, where 'refoolTrigger'
(attack 'refool') reads them. Refool repeats selection and retraining for several rounds; one is done here.
The reflection model itself (ghost and focal blur, the SSIM test) is data_loader.refool_trigger.
"""
import sys

import torch

import config
from data_loader import DATA_ROOT, REFOOL_POOL_SIZE, BatchLoader, load_dataset, refool_candidates, refool_trigger
from models import select_model
from utils import UserError
from utils.checkpoint import atomic_write
from utils.cli import run
from utils.engine import accuracy
from utils.runtime import autocast_dtype, generator, resolve_device, seed_everything


def score_reflections(model, images, candidates, target_label, device, amp_dtype=None):
    """For each candidate reflection, the percentage of `images` (uint8, none of the target class) that
    `model` assigns to `target_label` once that candidate alone is reflected into them: the ASR of that
    reflection, measured by the shared evaluator."""
    target = torch.full((len(images),), target_label)
    return torch.tensor([accuracy(model, BatchLoader(refool_trigger(images, candidates[c:c + 1], seed=c), target,
                                                     len(images), device), device, amp_dtype)
                         for c in range(len(candidates))])



def main():
    parser = config.get_refool_arguments()
    args = config.check_finite(parser, parser.parse_args())
    config.output_file(args.output, '--output', args)
    if not 0 < args.keep <= REFOOL_POOL_SIZE or args.images < 1:
        raise UserError(f'--keep must be in 1..{REFOOL_POOL_SIZE} and --images at least 1')
    seed_everything(args.seed)
    device = resolve_device(args.device)
    model, ckpt = select_model(args.s_name, args.num_classes, args.model, args.trust_checkpoint)
    model = model.to(device, memory_format=torch.channels_last)
    x, y = load_dataset(args.dataset, args.data_root or DATA_ROOT)[0]['train']
    others = torch.nonzero(y != args.target_label).flatten()
    pick = others[torch.randperm(len(others), generator=generator(args.seed, 'refool_selection'))[:args.images]]
    print(f'scoring {REFOOL_POOL_SIZE} candidate reflections on {len(pick)} training images with {args.model} '
          f"(trigger {ckpt.get('config', {}).get('trigger_type')}, ASR {ckpt.get('asr')})", flush=True)
    scores = score_reflections(model, x[pick], refool_candidates(), args.target_label, device,
                                       autocast_dtype(device, args.amp))
    order = scores.argsort(descending=True)
    kept = order[:args.keep].sort().values
    print(f'candidate success rates: mean {scores.mean():.2f}%, median {scores.median():.2f}%; kept {args.keep} '
          f'with {scores[kept].min():.2f}..{scores[kept].max():.2f}% (mean {scores[kept].mean():.2f}%)')
    record = {'indices': kept.tolist(), 'scores': scores.tolist(), 'source_model': args.model,
              'source_config': ckpt.get('config'), 'source_acc': ckpt.get('acc'), 'source_asr': ckpt.get('asr'),
              'config': vars(args), 'command': 'python ' + ' '.join(sys.argv)}
    atomic_write(args.output, lambda f: torch.save(record, f))
    print(f'saved {args.output}')


if __name__ == '__main__':
    run(main)
