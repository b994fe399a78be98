"""`DistillationLoss`, the MiniAlbert distillation loss apart from any loop, and `DistillationTrainer`, the stock
`Trainer` with that loss.

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
from torch.nn import functional as F
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase, Trainer

from ..convert import Teacher, check_layer_map, layer_map, load_teacher
from ..data import masked_lm_collator
from ..devices import check_fsdp_device
from ..errors import BadInputError
from ..held_out import unmasked
from ..modeling_minialbert import MiniAlbertForMaskedLM
from ..sentence_embeddings import pool, read_sentence_modules
from .agreement import running_depth
from .losses import (
    TeacherTargets,
    cosine_loss,
    logit_kl,
    mapped_attention_kl,
    masked_mean,
    relational_loss,
    teacher_targets,
)
from .recipes import (
    DEPTH_LOSS_NAMES,
    RECIPE_TERMS,
    DepthSchedule,
    DistillationArguments,
    Recipe,
    resolve_depth_weights,
    resolve_recipe,
)

logger = logging.getLogger(__name__)

# The terms of the masked-LM head's predictions, and the terms read from the student's states (its embedding
# output, hidden states and attention maps), which follow the teacher on `distill_inputs`.
PREDICTION_TERMS = tuple(term.name for term in RECIPE_TERMS if term.reads == "predictions")
STATE_TERMS = tuple(term.name for term in RECIPE_TERMS if term.reads != "predictions")


class DistillationLoss:
    """The MiniAlbert distillation loss of a student against a frozen BERT teacher, apart from any training loop:
    `terms(student, batch)` gives each term of the recipe, unweighted; `weights()` gives what each term weighs.

    Batches are masked here (`mask`), with `DataCollatorForLanguageModeling`'s masking and the global RNG, rather
    than in the data loader: the Trainer restores the RNG state of a checkpoint only after it has fetched the first
    batch of a resumed run, so loader-side masks would make a resumed run diverge from an uninterrupted one. Batches
    that already carry `labels` (a masking collator of your own) are used as they are.

    Args:
        teacher: the loaded teacher (`minialbert.convert.load_teacher`), frozen and on the training device.
        layer_map: the teacher layer (1-based) each recursion follows.
        recipe: which terms, with which weights and forms (`resolve_recipe`).
        tokenizer: masks the batches.
        args: the `DistillationArguments` the terms read (temperatures, masking probability, bf16, device).
    """

    def __init__(
        self,
        teacher: Teacher,
        layer_map: list[int],
        recipe: Recipe,
        tokenizer: PreTrainedTokenizerBase,
        args: DistillationArguments,
    ):
        self.teacher, self.layer_map, self.recipe, self.args = teacher, layer_map, recipe, args
        self.masking = masked_lm_collator(tokenizer, args.mlm_probability)
        self.depth_schedule = DepthSchedule.parse(recipe.depth_schedule)
        # Under the `grow` schedule a shallow step follows its own recursions' teacher layers, the sentence term
        # included.
        self.grows = self.depth_schedule.kind == "grow"

    def weights(self) -> dict[str, float]:
        """Each term's weight; with elastic depth also `{term}@{d}` (sum) or `{term}@sampled` (sample) for the
        shallower depths' terms: the term's weight times the depth's (for sample: times all their sum)."""
        weights = dict(self.recipe.weights)
        for depth, depth_weight in self.depth_weights().items():
            for name in DEPTH_LOSS_NAMES:
                weights[f"{name}@{depth}"] = self.recipe.weights[name] * depth_weight
        return weights

    def depth_weights(self) -> dict[int | str, float]:
        """The shallower depths' weights by suffix: every depth ("sum"), or "sampled" for the one drawn per step."""
        depth_weights = {
            depth: weight for depth, weight in enumerate(self.recipe.depth_weights or [], start=1) if weight > 0
        }
        if self.recipe.elastic_depth == "sample":
            return {"sampled": sum(depth_weights.values())}
        return depth_weights

    def shallower_depths(self) -> dict[int | str, int]:
        """The shallower depths this step trains, by the suffix of their terms' names."""
        if self.recipe.elastic_depth == "off":
            return {}
        if self.recipe.elastic_depth == "sum":
            return {depth: depth for depth in self.depth_weights()}
        # Drawn with the global RNG, which checkpoints restore: a resumed run draws what the uninterrupted one did.
        weights = torch.tensor(self.recipe.depth_weights)
        return {"sampled": int(torch.multinomial(weights, 1)) + 1}

    def mask(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mask a padded batch for masked-LM (a no-op for batches that already have `labels`)."""
        inputs = dict(inputs)
        special_tokens_mask = inputs.pop("special_tokens_mask", None)
        if "labels" not in inputs:
            input_ids, labels = self.masking.torch_mask_tokens(
                inputs["input_ids"].cpu().clone(),
                special_tokens_mask.cpu() if special_tokens_mask is not None else None,
            )
            device = inputs["input_ids"].device
            inputs["input_ids"], inputs["labels"] = input_ids.to(device), labels.to(device)
        return inputs

    def hidden_state_loss(self, student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.recipe.hidden_loss == "mse":
            return masked_mean((student.float() - teacher.float()).square().mean(-1), real)
        return cosine_loss(student, teacher, real)

    def sentence_embedding_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Between pooled sentence embeddings, sentence by sentence."""
        if self.recipe.sentence_loss == "mse":
            return F.mse_loss(student, teacher)
        return 1 - F.cosine_similarity(student, teacher, dim=-1).mean()

    def terms(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], depth: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Each loss term (unweighted) for one batch. `depth`: the recursions `model` runs (default: all; the caller
        runs it there, as `DistillationTrainer` does with `running_depth`); a shallower step follows the teacher
        layers a student of that depth follows."""
        weights = self.weights()
        predicts = any(weights[name] > 0 for name in PREDICTION_TERMS)
        distills = any(weights[name] > 0 for name in STATE_TERMS)
        on_masked = self.recipe.distill_inputs == "masked"
        depth = depth or len(self.layer_map)
        losses = {}
        if predicts or on_masked:
            masked = self.mask(inputs)
            losses |= self.pass_losses(model, masked, predicts=predicts, distills=distills and on_masked, depth=depth)
        if distills and not on_masked:
            losses |= self.pass_losses(model, self.unmasked(inputs), predicts=False, distills=True, depth=depth)
        return losses

    def layers_at(self, depth: int) -> list[int]:
        """The teacher layers the student's first `depth` recursions follow: the first `depth` of the layer map
        under the `grow` depth schedule, else those a `depth`-recursion student follows."""
        if depth == len(self.layer_map) or self.grows:
            return self.layer_map[:depth]
        return layer_map(self.teacher.bert.config.num_hidden_layers, depth)

    # A batch as inference sees it: a batch masked by `mask` (for evaluation) or by a masking collator of your own,
    # with its original tokens restored and no labels.
    unmasked = staticmethod(unmasked)

    def pass_losses(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        predicts: bool,
        distills: bool,
        depth: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The terms one forward pass of student and teacher gives: the masked-LM and logit terms (`predicts`,
        on a masked batch with `labels`) and the distillation terms (`distills`), the student running `depth`
        recursions (default: all)."""
        layers = self.layers_at(depth or len(self.layer_map))
        weights = self.weights()
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        real = inputs["attention_mask"].bool()
        # An all-False mask skips the vocabulary projection when only hidden states are wanted.
        prediction_mask = labels != -100 if predicts else torch.zeros_like(real)
        with_attention = distills and weights["attention"] > 0
        outputs = model(
            **inputs, prediction_mask=prediction_mask, output_hidden_states=distills, output_attentions=with_attention
        )
        # A shallower depth's outputs are the first recursions' of this pass: no second forward is needed.
        depths = {suffix: d for suffix, d in self.shallower_depths().items() if d < len(layers)} if distills else {}
        num_teacher_layers = self.teacher.bert.config.num_hidden_layers
        depth_layers = {suffix: layer_map(num_teacher_layers, depth) for suffix, depth in depths.items()}
        losses = {}
        if predicts:
            losses["mlm"] = F.cross_entropy(outputs.logits.float(), labels[prediction_mask])
        if not (distills or weights["logit"] > 0):
            return losses
        with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
            targets = teacher_targets(
                self.teacher,
                inputs,
                sorted(set(layers).union(*depth_layers.values())),
                with_attention,
                prediction_mask if predicts and weights["logit"] > 0 else None,
            )
        if predicts and weights["logit"] > 0:
            losses["logit"] = logit_kl(outputs.logits, targets.logits, self.args.temperature)
        if not distills:
            return losses
        if weights["embedding"] > 0:
            losses["embedding"] = cosine_loss(outputs.hidden_states[0], targets.hidden_states[0], real)
        final = layers[-1] if self.grows and len(layers) < len(self.layer_map) else -1
        losses |= self.depth_losses(outputs.hidden_states, outputs.attentions, targets, layers, inputs, final)
        for suffix, depth in depths.items():
            attentions = outputs.attentions[:depth] if with_attention else None
            terms = self.depth_losses(
                outputs.hidden_states[: depth + 1], attentions, targets, depth_layers[suffix], inputs
            )
            losses |= {f"{name}@{suffix}": value for name, value in terms.items()}
        return losses

    def depth_losses(
        self,
        hidden_states: tuple[torch.Tensor, ...],
        attentions: tuple[torch.Tensor, ...] | None,
        targets: TeacherTargets,
        layers: list[int],
        inputs: dict[str, torch.Tensor],
        teacher_final: int = -1,
    ) -> dict[str, torch.Tensor]:
        """The terms of the student's first `len(layers)` recursions (`hidden_states`: the embedding output and one
        state per recursion) against the teacher layers `layers`: hidden, attention, sentence and relational (the
        sentence terms against the teacher state `teacher_final`, by default its last)."""
        weights = self.weights()
        real = inputs["attention_mask"].bool()
        losses = {}
        pairs = list(zip(hidden_states[1:], layers, strict=True))
        if self.recipe.hidden_layers == "last":
            pairs = pairs[-1:]
        if weights["hidden"] > 0:
            losses["hidden"] = torch.stack(
                [self.hidden_state_loss(student, targets.hidden_states[k], real) for student, k in pairs]
            ).mean()
        if attentions is not None:
            losses["attention"] = mapped_attention_kl(attentions, targets.attentions, layers, real)
        if weights["sentence"] > 0 or weights["relational"] > 0:
            student_embeddings = pool(
                hidden_states[-1].float(), inputs["attention_mask"], self.recipe.sentence_pooling
            )
            teacher_embeddings = pool(
                targets.hidden_states[teacher_final].float(), inputs["attention_mask"], self.recipe.sentence_pooling
            )
            if weights["sentence"] > 0:
                losses["sentence"] = self.sentence_embedding_loss(student_embeddings, teacher_embeddings)
            if weights["relational"] > 0:
                losses["relational"] = relational_loss(
                    student_embeddings,
                    teacher_embeddings,
                    self.recipe.relational_loss,
                    self.args.relational_temperature,
                )
        return losses


class DistillationTrainer(Trainer):
    """A `Trainer` whose loss is `DistillationLoss` against a frozen BERT teacher; the rest is the Trainer's
    plumbing: the teacher is frozen, kept in eval mode (no dropout) whatever mode the Trainer puts the student in,
    moved to the student's device and never part of what the Trainer saves, and the mean of each loss term since
    the last log joins the Trainer's logs.

    A subclass changes the recipe through `weights` and `distillation_losses` (examples/run_distillation.py).

    Args:
        teacher: a BERT model, checkpoint folder or Hub id (see `minialbert.convert.load_teacher`).
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
