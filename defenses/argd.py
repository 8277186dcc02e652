"""ARGD, Attention Relation Graph Distillation (Xia et al., IJCAI 2022): NAD's vertex terms plus
attention-relation edges and cross-layer embeddings."""
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from at import at_loss, normalized_attention


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


def loss(args, teacher, device):
    """The loss and its own parameters (the projections), which the optimiser trains with the student's."""
    fn = ARGDLoss(teacher, (args.beta1, args.beta2, args.beta3), args.argd_edge, args.argd_embed, args.p,
                  args.attention, args.at_form).to(device)
    return fn, list(fn.projections.parameters())
