"""How closely a student follows its teacher: the agreement report on held-out sets (before and after a run),
agreement at every depth, and the callback that logs the agreement curve during training. The held-out sets
themselves are built by `minialbert.held_out`."""

import math
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import TrainerCallback

from ..held_out import unmasked
from ..modeling_minialbert import MiniAlbertForMaskedLM
from ..sentence_embeddings import encode, similarity_spearman
from ..teacher import Teacher
from .losses import cosine_loss, mapped_attention_kl, teacher_targets

Batches = list[dict[str, torch.Tensor]]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode (no dropout) inside the block, back in the mode it was in after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def running_depth(model: nn.Module, num_recursions: int | None):
    """Run `model` (any MiniAlbert) at another depth inside the block: its first `num_recursions` recursions."""
    config = model.config
    before, config.num_recursions = config.num_recursions, num_recursions
    try:
        yield model
    finally:
        config.num_recursions = before


# The teacher never trains: its pooled embeddings of a held-out set are computed once per teacher and set, and reused
# by every scoring of a run (before, each point of the curve, after, each depth). Keyed by the set's identity (and
# whether the batches are the set itself or derived from it), which the entry keeps alive; the teacher's entries go
# with it.
_teacher_embeddings: "weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, bool], tuple[list, torch.Tensor]]]" = (
    weakref.WeakKeyDictionary()
)


def encode_teacher(teacher: Teacher, batches: Batches, source: list | None = None) -> torch.Tensor:
    """`encode(teacher.bert, batches)`, computed once for the held-out set `source` (default: `batches` itself; a
    caller that rebuilds `batches` from the same set on every call passes the set)."""
    cache = _teacher_embeddings.setdefault(teacher.bert, {})
    held_out = batches if source is None else source
    key = (id(held_out), source is not None)  # the set's own batches and batches derived from it differ
    if key not in cache:
        cache[key] = (held_out, encode(teacher.bert, batches))
    return cache[key][1]


def sentence_agreement(student: nn.Module, teacher: Teacher, sentence_sets: dict[str, Batches]) -> dict[str, float]:
    """`similarity_spearman` of the student's and the teacher's embeddings of each named set of unmasked batches."""
    return {
        name: similarity_spearman(encode(student.minialbert, batches), encode_teacher(teacher, batches))
        for name, batches in sentence_sets.items()
    }


@torch.no_grad()
def agreement_report(
    student: MiniAlbertForMaskedLM,
    teacher: Teacher,
    batches: Batches,
    layers: list[int],
    sentence_sets: dict[str, Batches] | None = None,
) -> dict[str, float]:
    """How closely the student follows the teacher on held-out masked batches.

    - `hidden_cosine`: cosine of the student's last hidden state and its mapped teacher layer, at real tokens;
    - `attention_kl`: attention KL(teacher || student) over the mapped layers;
    - `student_mlm_accuracy` / `teacher_mlm_accuracy`: top-1 accuracy at the masked tokens (teacher: with a head);
    - `sentence_spearman`: `similarity_spearman` of mean-pooled embeddings of the unmasked windows;
    - and for each `name: batches` of `sentence_sets` (unmasked sentences from other sources, e.g.
      `ood_sentence_spearman`), the same on those batches.
    """
    device = next(student.parameters()).device
    totals = defaultdict(float)
    real_tokens = masked_tokens = 0
    unmasked_batches = []
    with evaluating(student):
        for batch in batches:
            batch = {name: tensor.to(device) for name, tensor in batch.items() if name != "special_tokens_mask"}
            unmasked_batches.append(unmasked(batch))
            labels = batch.pop("labels")
            masked, real = labels != -100, batch["attention_mask"].bool()
            outputs = student(**batch, prediction_mask=masked, output_hidden_states=True, output_attentions=True)
            targets = teacher_targets(teacher, batch, layers, True, masked)
            count = int(real.sum())
            cosine = 1 - cosine_loss(outputs.hidden_states[-1], targets.hidden_states[layers[-1]], real)
            totals["hidden_cosine"] += cosine.item() * count
            totals["attention_kl"] += (
                mapped_attention_kl(outputs.attentions, targets.attentions, layers, real).item() * count
            )
            totals["student_mlm_accuracy"] += (outputs.logits.argmax(-1) == labels[masked]).sum().item()
            if targets.logits is not None:
                totals["teacher_mlm_accuracy"] += (targets.logits.argmax(-1) == labels[masked]).sum().item()
            real_tokens += count
            masked_tokens += int(masked.sum())

        report = {
            name: total / (masked_tokens if name.endswith("mlm_accuracy") else real_tokens)
            for name, total in totals.items()
        }
        report["sentence_spearman"] = similarity_spearman(
            encode(student.minialbert, unmasked_batches), encode_teacher(teacher, unmasked_batches, source=batches)
        )
        report |= sentence_agreement(student, teacher, sentence_sets or {})
    return {name: round(value, 4) for name, value in report.items()}


@torch.no_grad()
def agreement_by_depth(
    student: MiniAlbertForMaskedLM, teacher: Teacher, sentence_sets: dict[str, Batches]
) -> list[dict[str, float]]:
    """`similarity_spearman` with the teacher on each of `sentence_sets` (unmasked batches) at every depth of the
    student, 1 to all its recursions: what each `num_recursions` a user may load it with keeps. One row per depth,
    `{"num_recursions": d, name: score, ...}`."""
    report = []
    with evaluating(student):
        for depth in range(1, student.config.num_hidden_layers + 1):
            with running_depth(student, depth):
                scores = sentence_agreement(student, teacher, sentence_sets)
            report.append({"num_recursions": depth} | {name: round(value, 4) for name, value in scores.items()})
    return report


class SentenceAgreementCallback(TrainerCallback):
    """Log the student's sentence agreement with the teacher on held-out sets (e.g. `sentence_spearman` on
    held-out windows, `ood_sentence_spearman` on out-of-domain sentences) every `args.agreement_steps` and at the
    end of every epoch, with the seconds of training so far, into the Trainer's logs and log history, so
    checkpoints keep the curve and `report_to` integrations plot it.

    Args:
        trainer: the `DistillationTrainer` (its model, teacher and `log`).
        held_out: unmasked batches by name (`minialbert.held_out.HeldOutSets.agreement_sets`).
    """

    def __init__(self, trainer, held_out: dict[str, Batches]):
        self.trainer, self.held_out = trainer, held_out
        self.seconds, self.started, self.scored_step = 0.0, None, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        share = args.agreement_steps
        every = share if share >= 1 else math.ceil(state.max_steps * share)
        if every and state.global_step % every == 0 and state.global_step < state.max_steps:
            self.log_agreement(state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self.log_agreement(state, control)

    def log_agreement(self, state, control):
        if state.global_step == self.scored_step:  # an epoch that ends on a scoring step
            return
        self.scored_step = state.global_step
        # Scoring time is not training time: the clock pauses while the held-out sets are encoded.
        self.seconds += time.perf_counter() - self.started
        student = self.trainer.accelerator.unwrap_model(self.trainer.model)
        with evaluating(student):
            scores = sentence_agreement(student, self.trainer.teacher, self.held_out)
        # Logging clears `control.should_log`; keep it, or the Trainer would skip its own loss log of this step.
        should_log = control.should_log
        self.trainer.log(
            {f"agreement_{name}": round(value, 4) for name, value in scores.items()}
            | {"agreement_train_seconds": round(self.seconds, 1)}
        )
        control.should_log = should_log
        self.started = time.perf_counter()
