"""Two-stage fine-tuning: a control for NAD. The teacher (the backdoored model already fine-tuned once,
perhaps under a harsher protocol than the student's) is fine-tuned again under the student's protocol with
plain CE, for as many epochs as NAD trains, on the same clean subset. It gets everything NAD's student gets
from that teacher but the distillation: if NAD beats fine-tuning only because its teacher had already
erased more of the backdoor, two-stage fine-tuning does as well; if the attention term is what helps, NAD
does better. Its loss is fine-tuning's (nad.plain_loss); `prepare` swaps the student's weights for the
teacher's before the first epoch ('before' in its results stays the backdoored model's).
"""
from models import select_model


def prepare(args, student, loaders, device, amp_dtype):
    """Load the teacher (--t_model, an --s_name model: config refuses another --t_name) into the student."""
    teacher, ckpt = select_model(args.t_name, args.num_classes, args.t_model, args.trust_checkpoint)
    student.load_state_dict(teacher.state_dict())
    return {'started_from': {'path': args.t_model, 'epoch': ckpt.get('epoch'), 'acc': ckpt.get('acc'),
                             'asr': ckpt.get('asr')}}
