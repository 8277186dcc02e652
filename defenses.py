"""The erasing defenses that fine-tune the backdoored model: each is a loss for the shared training loop
(utils.engine.train_epoch) or a model surgery done before it. main.py picks one with --defense.

    finetune   CE on the clean subset (NAD with all betas 0)
    nad        CE + sum_l beta_l * AT(student_l, teacher_l)                       (Li et al., ICLR 2021)
    mixup      CE on mixed pairs, alpha 1                                          (NAD paper, Appendix B)
    cutout     fine-tuning with a 3x3 Cutout hole                                  (NAD paper, Appendix B)
    fineprune  mask the least active channels of the last layer, then fine-tune    (Liu et al., RAID 2018)
    argd       NAD's vertex terms + attention-relation edges + cross-layer embeddings (Xia et al., IJCAI 2022)

MCR (a curve in weight space, not a fine-tuning loss) lives in mcr.py.
"""
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from at import at_loss, normalized_attention
from utils.engine import accuracy
from utils.runtime import autocast

DEFENSES = ('nad', 'finetune', 'mixup', 'cutout', 'fineprune', 'argd', 'mcr')


# --- NAD and fine-tuning ----------------------------------------------------------------------------

def distillation_loss(teacher, betas, p, kind, form):
    """CE plus the weighted attention distillation terms; with all betas 0 (or no teacher), fine-tuning."""
    def loss_fn(student, x, y):
        *student_groups, logits = student(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None and any(betas):
            with torch.no_grad():
                teacher_groups = teacher(x)[:-1]
            for beta, fs, ft in zip(betas, student_groups, teacher_groups):
                if beta:  # the student side is NOT detached: these terms must reach its weights
                    loss = loss + beta * at_loss(fs, ft, p, kind, form)
        return loss
    return loss_fn


# --- Mixup --------------------------------------------------------------------------------------------

def mixup_loss(alpha, generator):
    """Mixup (Zhang et al. 2018): train on lam*x_i + (1-lam)*x_j with the same mix of the two labels."""
    # lam comes from torch's global generator (seeded by --seed); the pairing from `generator`.
    beta = torch.distributions.Beta(float(alpha), float(alpha)) if alpha > 0 else None

    def loss_fn(model, x, y):
        lam = beta.sample().item() if beta is not None else 1.0
        perm = torch.randperm(len(y), device=x.device, generator=generator)
        logits = model(lam * x + (1 - lam) * x[perm])[-1]
        return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    return loss_fn


# --- Fine-pruning ---------------------------------------------------------------------------------------
# The features the classifier reads are relu(bn1(block3 output)), 64 channels for WRN-16-1. Pruning a
# channel of the last layer = zeroing its scale and shift in that final BatchNorm, so relu gives 0 for
# every input. The pruned model stays a plain WRN state dict (it loads anywhere), and masking the
# gradients of those two entries keeps the channels dead through fine-tuning (momentum and weight decay
# of a zero stay zero).

@torch.inference_mode()
def last_layer_activation(model, loader, device, amp_dtype=None):
    """Mean activation of each channel of the last layer (after the final BN-ReLU) over `loader`."""
    model.eval()
    total, count = 0.0, 0
    for x, _ in loader:
        with autocast(device, amp_dtype):
            last_group = model(x)[-2]
        total = total + F.relu(model.bn1(last_group.float())).mean(dim=(2, 3)).sum(0)
        count += len(x)
    return total / count


def prune_order(model, loader, device, amp_dtype=None):
    """Channels of the last layer from least to most active on clean data (the order Liu et al. prune in)."""
    return torch.argsort(last_layer_activation(model, loader, device, amp_dtype), stable=True)


def prune_channels(model, channels):
    """Zero the final BatchNorm's scale and shift of `channels` and keep them zero while training."""
    mask = torch.ones_like(model.bn1.weight)
    mask[channels] = 0
    with torch.no_grad():
        model.bn1.weight.mul_(mask)
        model.bn1.bias.mul_(mask)
    for param in (model.bn1.weight, model.bn1.bias):
        param.register_hook(lambda grad, mask=mask: grad * mask)
    return mask


def search_prune_ratio(model, order, loader, device, amp_dtype, max_drop, step=0.05, target_acc=None):
    """Liu et al.'s rule: prune more of the last layer while accuracy on the defender's clean data stays
    within `max_drop` points of the unpruned model's (or, given `target_acc`, at or above it, to match
    another defense's accuracy). Returns (ratio, accuracy before, accuracy at ratio)."""
    state = {k: v.clone() for k, v in model.bn1.state_dict().items()}
    base = accuracy(model, loader, device, amp_dtype)
    floor = base - max_drop if target_acc is None else target_acc
    chosen, chosen_acc = 0.0, base
    for k in range(1, int(round(1 / step))):
        ratio = round(k * step, 4)
        n = int(round(ratio * len(order)))
        with torch.no_grad():
            model.bn1.weight[order[:n]] = 0
            model.bn1.bias[order[:n]] = 0
        acc = accuracy(model, loader, device, amp_dtype)
        model.bn1.load_state_dict(state)
        if acc < floor:
            break
        chosen, chosen_acc = ratio, acc
    return chosen, base, chosen_acc


# --- ARGD -----------------------------------------------------------------------------------------------

class ARGDLoss(nn.Module):
    """Attention Relation Graph Distillation. The three group attention maps are the vertices of a graph
    per sample; the loss aligns the student's graph with the teacher's:

      vertices   NAD's terms, beta_l * AT(student_l, teacher_l)
      edges      for each pair of groups (i, j), the distance between the sample's two attention maps,
                 both average-pooled to the smallest map size (8x8) and L2-normalised; each edge divided by
                 its mean over the batch (so the term is scale free); MSE between student and teacher edges
      embedding  cross-layer: for each pair i < j, a learnable linear projection of the student's pooled
                 group-i map should give the teacher's pooled group-j map (MSE of normalised vectors)

    The projections are this module's only parameters (the teacher is held outside the module tree);
    main.py hands them to the optimiser together with the student's (the original implementation left
    them out, so they never trained)."""

    def __init__(self, teacher, betas, edge_weight, embed_weight, p=2.0, kind='sum_p', form='code', size=8):
        super().__init__()
        self.teacher_box = [teacher]  # a list, so the frozen teacher is not registered as a submodule
        self.betas, self.p, self.kind, self.form, self.size = betas, p, kind, form, size
        self.edge_weight, self.embed_weight = edge_weight, embed_weight
        self.pairs = list(itertools.combinations(range(3), 2))
        dim = size * size
        self.projections = nn.ModuleList(nn.Linear(dim, dim) for _ in self.pairs)
        for proj in self.projections:  # start as the identity: the first steps compare maps directly
            nn.init.eye_(proj.weight)
            nn.init.zeros_(proj.bias)
        self.last_terms = {}

    def pooled(self, groups):
        """Each group's attention map pooled to size x size, flattened and L2-normalised: B x size^2."""
        maps = [normalized_attention(g, self.p, self.kind).view(len(g), 1, *g.shape[2:]) for g in groups]
        return [F.normalize(F.adaptive_avg_pool2d(m, self.size).flatten(1), dim=1) for m in maps]

    def edges(self, vertices):
        """B x pairs matrix of distances between a sample's vertices, divided by their batch mean."""
        d = torch.stack([(vertices[i] - vertices[j]).norm(dim=1) for i, j in self.pairs], dim=1)
        return d / (d.mean(dim=0, keepdim=True) + 1e-6)

    def forward(self, student, x, y):
        *student_groups, logits = student(x)
        with torch.no_grad():
            teacher_groups = self.teacher_box[0](x)[:-1]
        ce = F.cross_entropy(logits, y)
        vertex = sum(b * at_loss(fs, ft, self.p, self.kind, self.form)
                     for b, fs, ft in zip(self.betas, student_groups, teacher_groups) if b)
        vs, vt = self.pooled([g.float() for g in student_groups]), self.pooled([g.float() for g in teacher_groups])
        edge = F.mse_loss(self.edges(vs), self.edges(vt))
        embed = sum(F.mse_loss(F.normalize(proj(vs[i]), dim=1), vt[j])
                    for proj, (i, j) in zip(self.projections, self.pairs)) / len(self.pairs)
        self.last_terms = {'ce': ce.detach(), 'vertex': torch.as_tensor(vertex).detach(), 'edge': edge.detach(),
                           'embed': embed.detach()}
        return ce + vertex + self.edge_weight * edge + self.embed_weight * embed
