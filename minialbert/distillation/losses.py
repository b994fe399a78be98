"""The distillation loss terms as pure functions of student and teacher outputs (fp32, real tokens only), and
`teacher_targets`: everything they need from the frozen teacher, computed without autograd."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..convert import Teacher


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos over real tokens."""
    return masked_mean(1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1), real)


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per head and real query row, averaged. Padded keys hold zero probability in both."""
    student, teacher = student.float(), teacher.float()
    kl = (torch.xlogy(teacher, teacher) - teacher * student.clamp_min(1e-12).log()).sum(-1)
    return masked_mean(kl, real[:, None, :].expand_as(kl))


def logit_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened vocabulary distributions, scaled by T² (Hinton et al.)."""
    student = F.log_softmax(student.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def relational_loss(student: torch.Tensor, teacher: torch.Tensor, form: str, temperature: float) -> torch.Tensor:
    """In-batch relational distillation of sentence embeddings (`student`, `teacher`: batch x width): how the
    student's cosine similarities between the batch's sentences differ from the teacher's, over pairs of distinct
    sentences. `mse`: mean squared difference of the two similarity matrices off the diagonal; `kl`:
    KL(teacher || student) between each row's softmax over the other sentences at `temperature`, averaged over rows
    (as in relational and contrastive distillation). A batch of one sentence has no pairs and gives 0."""
    student, teacher = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    count = len(student)
    if count < 2:
        return student.sum() * 0
    others = ~torch.eye(count, dtype=torch.bool, device=student.device)
    student_similarities = (student @ student.T)[others].view(count, count - 1)
    teacher_similarities = (teacher @ teacher.T)[others].view(count, count - 1)
    if form == "mse":
        return (student_similarities - teacher_similarities).square().mean()
    student_log = F.log_softmax(student_similarities / temperature, dim=-1)
    teacher_log = F.log_softmax(teacher_similarities / temperature, dim=-1)
    return F.kl_div(student_log, teacher_log, log_target=True, reduction="batchmean")


def bert_attention_probabilities(layer: nn.Module, hidden_states: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """One BERT layer's attention probabilities, recomputed from its input hidden states.

    The teacher itself runs SDPA and returns hidden states only; the maps of the mapped layers are rebuilt
    from their inputs (two projections and a softmax), so unmapped layers never materialise attention.
    """
    attention = layer.attention.self
    shape = (*hidden_states.shape[:-1], attention.num_attention_heads, attention.attention_head_size)
    query = attention.query(hidden_states).view(shape).transpose(1, 2).float()
    key = attention.key(hidden_states).view(shape).transpose(1, 2).float()
    scores = (query @ key.transpose(-1, -2)) * attention.attention_head_size**-0.5
    scores = scores.masked_fill(~real[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1)


def mapped_attention_kl(
    student_attentions: tuple[torch.Tensor, ...], teacher_attentions: dict[int, torch.Tensor], layers, real
) -> torch.Tensor:
    """Attention KL averaged over every (recursion, mapped teacher layer) pair."""
    pairs = zip(student_attentions, layers, strict=True)
    return torch.stack([attention_kl(student, teacher_attentions[k], real) for student, k in pairs]).mean()


@dataclass
class TeacherTargets:
    hidden_states: tuple[torch.Tensor, ...]
    attentions: dict[int, torch.Tensor]
    logits: torch.Tensor | None


@torch.no_grad()
def teacher_targets(
    teacher: Teacher,
    inputs: dict[str, torch.Tensor],
    layers: list[int],
    with_attention: bool,
    prediction_mask: torch.Tensor | None,
) -> TeacherTargets:
    """Everything the losses need from the teacher, with no autograd: hidden states, the attention maps of
    `layers` (1-based) only, and masked-LM logits at `prediction_mask` only (when the teacher has a head)."""
    real = inputs["attention_mask"].bool()
    outputs = teacher.bert(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        token_type_ids=inputs.get("token_type_ids"),
        output_hidden_states=True,
    )
    hidden_states = outputs.hidden_states
    attentions = {}
    if with_attention:
        for k in set(layers):
            attentions[k] = bert_attention_probabilities(teacher.bert.encoder.layer[k - 1], hidden_states[k - 1], real)
    logits = None
    if teacher.mlm_head is not None and prediction_mask is not None:
        logits = teacher.mlm_head(hidden_states[-1][prediction_mask])
    return TeacherTargets(hidden_states, attentions, logits)
