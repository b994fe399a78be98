"""`DistillationTrainer`: the stock `Trainer` with the MiniAlbert distillation loss (`DistillationLoss`, in
`minialbert.distillation.losses`).

Per batch, on real (non-padding) tokens only and in fp32, with the weights and options of a recipe
(`minialbert.distillation.recipes`):

    loss = mlm_weight * MLM(student) + attention_weight * attention_KL + hidden_weight * hidden_loss
         + logit_weight * logit_KL + embedding_weight * embedding_cosine + sentence_weight * sentence_loss
         + relational_weight * relational_loss

where recursion i of the student is matched with teacher layer `layer_map[i]` (1-based); the paper's recipe
(Nouriborji et al., 2023) uses the first four terms. With elastic depth (`elastic_depth`), every shallower depth
d < N of the student (its first d recursions, what `num_recursions=d` runs) adds its own hidden, attention, sentence
and relational terms against the teacher layers a d-recursion student follows (`layer_map(L, d)`), weighted by
`depth_weights[d - 1]`, so one student serves at several speeds. `DistillationTrainer` overrides `compute_loss`
(and `log`, to report each term); optimiser, schedule, checkpointing, logging and distributed launch stay the
Trainer's own.
"""

import logging
from collections import defaultdict

import torch
from torch import nn
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, Trainer

from ..devices import check_fsdp_device
from ..errors import BadInputError
from ..held_out import unmasked
from ..modeling_minialbert import MiniAlbertForMaskedLM
from ..sentence_embeddings import read_sentence_modules
from ..teacher import check_layer_map, layer_map, load_teacher
from .agreement import running_depth
from .losses import (
    DistillationLoss,
)
from .recipes import (
    DistillationArguments,
    resolve_depth_weights,
    resolve_recipe,
)

logger = logging.getLogger(__name__)


class DistillationTrainer(Trainer):
    """A `Trainer` whose loss is `DistillationLoss` against a frozen BERT teacher; the rest is the Trainer's
    plumbing: the teacher is frozen, kept in eval mode (no dropout) whatever mode the Trainer puts the student in,
    moved to the student's device and never part of what the Trainer saves, and the mean of each loss term since
    the last log joins the Trainer's logs.

    A subclass changes the recipe through `weights` and `distillation_losses` (examples/run_distillation.py).

    Args:
        teacher: a BERT model, checkpoint folder or Hub id (see `minialbert.teacher.load_teacher`).
        model: the `MiniAlbertForMaskedLM` student.
        args: `DistillationArguments`; other arguments are `Trainer`'s, and `processing_class` (the tokenizer)
            is required. The default `data_collator` pads windows (`DataCollatorWithPadding`).
    """

    def __init__(self, teacher, model: MiniAlbertForMaskedLM, args: DistillationArguments, *trainer_args, **kwargs):
        if not isinstance(args, DistillationArguments):
            raise BadInputError(f"DistillationTrainer needs DistillationArguments, got {type(args).__name__}.")
        check_fsdp_device(args)
        self.teacher = load_teacher(teacher)
        student, bert = model.config, self.teacher.bert.config
        if (student.vocab_size, student.hidden_size) != (bert.vocab_size, bert.hidden_size):
            raise BadInputError(
                f"Student and teacher must share the vocabulary and hidden size: the student has vocab_size "
                f"{student.vocab_size} and hidden_size {student.hidden_size}, the teacher {bert.vocab_size} and "
                f"{bert.hidden_size}. Convert the student from this teacher (minialbert convert)."
            )
        self.layer_map = list(
            args.layer_map or student.teacher_layer_map or layer_map(bert.num_hidden_layers, student.num_hidden_layers)
        )
        check_layer_map(self.layer_map, bert.num_hidden_layers, student.num_hidden_layers)
        self.sentence_modules = read_sentence_modules(self.teacher.name_or_path, self.teacher.revision)
        self.recipe = resolve_recipe(args, self.teacher, self.sentence_modules)
        resolve_depth_weights(self.recipe, len(self.layer_map))
        if student.num_recursions not in (None, student.num_hidden_layers):
            raise BadInputError(
                f"The student runs {student.num_recursions} of its {student.num_hidden_layers} recursions "
                "(num_recursions): distillation trains the full depth; load it without num_recursions (add "
                "--elastic_depth sum to train the shallower depths too)."
            )
        logger.info("Distillation recipe %r: %s.", self.recipe.name, self.recipe.reason)
        tokenizer = kwargs.get("processing_class")
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise BadInputError("DistillationTrainer needs the tokenizer as `processing_class` to mask batches.")
        kwargs.setdefault("data_collator", DataCollatorWithPadding(tokenizer))
        super().__init__(model, args, *trainer_args, **kwargs)
        # compute_loss returns a per-batch mean: let the Trainer divide it over gradient-accumulation steps.
        self.loss_is_scaled_for_ga = False
        self.teacher.bert.requires_grad_(False).eval().to(self.args.device)
        if self.teacher.mlm_head is not None:
            self.teacher.mlm_head.requires_grad_(False).eval().to(self.args.device)
        self.distillation = DistillationLoss(self.teacher, self.layer_map, self.recipe, tokenizer, self.args)
        self._step_depth: tuple[int, int] | None = None  # (global step, its depth)
        self._loss_sums = {"train": defaultdict(int), "eval": defaultdict(int)}
        self._loss_counts = {"train": 0, "eval": 0}
        self._depth_sum = 0

    def training_progress(self) -> float:
        """The share of training done, which `depth_schedule` reads: steps taken over `max_steps` (a subclass that
        ends training otherwise, e.g. on a time budget, gives its own)."""
        return self.state.global_step / self.state.max_steps if self.state.max_steps else 0.0

    def step_depth(self) -> int:
        """The recursions the current training step runs, as `depth_schedule` names it: decided once per
        optimiser step (every gradient-accumulation micro-batch of a step runs the same depth)."""
        if self._step_depth is None or self._step_depth[0] != self.state.global_step:
            depth = self.distillation.depth_schedule.depth(self.training_progress(), len(self.layer_map))
            self._step_depth = (self.state.global_step, depth)
        return self._step_depth[1]

    def weights(self) -> dict[str, float]:
        return self.distillation.weights()

    def distillation_losses(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each loss term (unweighted) for one batch: `DistillationLoss.terms`, a training step at the depth the
        schedule names (`step_depth`), evaluation at full depth."""
        depth = self.step_depth() if model.training else len(self.layer_map)
        if depth == len(self.layer_map):
            return self.distillation.terms(model, inputs)
        with running_depth(self.accelerator.unwrap_model(model), depth):
            return self.distillation.terms(model, inputs, depth)

    def mask(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.distillation.mask(inputs)

    unmasked = staticmethod(unmasked)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        losses = self.distillation_losses(model, inputs)
        weights = self.weights()  # a subclass's own terms included
        loss = sum(weights[name] * value for name, value in losses.items())
        phase = "train" if model.training else "eval"
        if model.training:
            self._depth_sum += self.step_depth()
        # Kept as tensors: `.item()` here would synchronise an accelerator every step.
        for name, value in losses.items():
            self._loss_sums[phase][name] = self._loss_sums[phase][name] + value.detach()
        self._loss_counts[phase] += 1
        return (loss, {"loss": loss}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Masked here so the Trainer sees `labels` and evaluates the loss.
        return super().prediction_step(model, self.mask(inputs), prediction_loss_only, ignore_keys)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each loss term since the last log to the Trainer's own logs (progress bar, report_to)."""
        phase = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        if self._loss_counts[phase] and (phase == "eval" or "loss" in logs):
            names = sorted(self._loss_sums[phase])
            means = torch.stack([self._loss_sums[phase][name] for name in names]) / self._loss_counts[phase]
            means = self.accelerator.reduce(means, reduction="mean")
            prefix = "eval_" if phase == "eval" else ""
            logs.update(
                {f"{prefix}{name}_loss": round(value, 4) for name, value in zip(names, means.tolist(), strict=True)}
            )
            if phase == "train":
                # The mean depth of the steps since the last log: with logging_steps 1, each step's depth.
                logs["depth"] = round(self._depth_sum / self._loss_counts[phase], 4)
                self._depth_sum = 0
            self._loss_sums[phase].clear()
            self._loss_counts[phase] = 0
        super().log(logs, start_time)
