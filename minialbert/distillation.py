"""Distil a BERT teacher into a MiniAlbert student with the stock `Trainer`.

Per batch (Nouriborji et al., 2023), on real (non-padding) tokens only and in fp32:

    loss = mlm_weight * MLM(student)
         + attention_weight * attention_KL + hidden_weight * hidden_cosine
         + logit_weight * logit_KL + embedding_weight * embedding_cosine

where recursion i of the student is matched with teacher layer `layer_map[i]` (1-based). `DistillationTrainer`
overrides `compute_loss` (and `log`, to report each term); optimiser, schedule, checkpointing, logging and
distributed launch stay the Trainer's own.
"""

import json
import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

from .configuration_minialbert import MiniAlbertConfig
from .convert import (
    ConversionArguments,
    Teacher,
    check_layer_map,
    convert_bert_to_minialbert,
    layer_map,
    load_teacher,
)
from .data import DataArguments, bundled_teacher_path, load_text_corpus, masked_lm_collator, tokenize_windows
from .modeling_minialbert import MiniAlbertForMaskedLM

logger = logging.getLogger(__name__)

LOSS_NAMES = ("mlm", "attention", "hidden", "logit", "embedding")


@dataclass
class DistillationArguments(TrainingArguments):
    """`TrainingArguments` plus the distillation recipe; parsed by `HfArgumentParser` and saved with every checkpoint.

    Defaults follow the paper where a CPU allows: AdamW at 5e-4 with weight decay 1e-4 and linear warm-up.
    """

    mlm_weight: float = field(default=1.0, metadata={"help": "Weight of the student's own masked-LM loss."})
    attention_weight: float = field(
        default=3.0, metadata={"help": "Weight of the attention KL over mapped layers (0 skips attention maps)."}
    )
    hidden_weight: float = field(default=3.0, metadata={"help": "Weight of the hidden-state cosine loss."})
    logit_weight: float = field(
        default=5.0, metadata={"help": "Weight of the masked-token logit KL (drops out for teachers without a head)."}
    )
    embedding_weight: float = field(default=0.0, metadata={"help": "Weight of the embedding-output cosine loss."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the logit KL."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of real tokens masked for masked-LM."})
    layer_map: list[int] | None = field(
        default=None,
        metadata={
            "help": "Teacher layer (1-based) matched with each recursion (default: the student's recorded "
            "teacher_layer_map, else minialbert.layer_map)."
        },
    )
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak AdamW learning rate (the paper: 5e-4)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the corpus (the paper: 1)."})
    per_device_train_batch_size: int = field(
        default=16, metadata={"help": "Windows per device and step (the paper: 48 on each of 4 GPUs)."}
    )
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay (the paper: 1e-4)."})
    warmup_steps: float = field(
        default=0.06, metadata={"help": "Linear warm-up: steps, or a fraction of all steps when below 1."}
    )

    def __post_init__(self):
        # Without this, accelerate treats a torchrun/accelerate launch on a machine without accelerators as
        # single-process: every process would train alone on the full data.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        super().__post_init__()
        for name in ("mlm_weight", *(f"{loss}_weight" for loss in LOSS_NAMES[1:])):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be non-negative, got {getattr(self, name)}.")
        if self.temperature <= 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}.")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}.")


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


class DistillationTrainer(Trainer):
    """A `Trainer` whose loss is the MiniAlbert distillation loss against a frozen BERT teacher.

    The teacher is frozen, kept in eval mode (no dropout) whatever mode the Trainer puts the student in, moved to
    the student's device, run without autograd, and never part of what the Trainer saves.

    Batches are masked inside `compute_loss`, with `DataCollatorForLanguageModeling`'s masking and the global RNG,
    rather than in the data loader: the Trainer restores the RNG state of a checkpoint only after it has fetched
    the first batch of a resumed run, so loader-side masks would make a resumed run diverge from an uninterrupted
    one. Batches that already carry `labels` (a masking collator of your own) are used as they are.

    Args:
        teacher: a BERT model, checkpoint folder or Hub id (see `minialbert.convert.load_teacher`).
        model: the `MiniAlbertForMaskedLM` student.
        args: `DistillationArguments`; other arguments are `Trainer`'s, and `processing_class` (the tokenizer)
            is required. The default `data_collator` pads windows (`DataCollatorWithPadding`).
    """

    def __init__(self, teacher, model: MiniAlbertForMaskedLM, args: DistillationArguments, *trainer_args, **kwargs):
        if not isinstance(args, DistillationArguments):
            raise ValueError(f"DistillationTrainer needs DistillationArguments, got {type(args).__name__}.")
        self.teacher = load_teacher(teacher)
        student, bert = model.config, self.teacher.bert.config
        if (student.vocab_size, student.hidden_size) != (bert.vocab_size, bert.hidden_size):
            raise ValueError(
                f"Student and teacher must share the vocabulary and hidden size: the student has vocab_size "
                f"{student.vocab_size} and hidden_size {student.hidden_size}, the teacher {bert.vocab_size} and "
                f"{bert.hidden_size}. Convert the student from this teacher (minialbert convert)."
            )
        self.layer_map = list(
            args.layer_map or student.teacher_layer_map or layer_map(bert.num_hidden_layers, student.num_hidden_layers)
        )
        check_layer_map(self.layer_map, bert.num_hidden_layers, student.num_hidden_layers)
        if args.logit_weight > 0 and self.teacher.mlm_head is None:
            logger.warning(
                "The teacher %s has no masked-LM head: the logit KL term (logit_weight=%s) drops out.",
                self.teacher.name_or_path,
                args.logit_weight,
            )
        tokenizer = kwargs.get("processing_class")
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise ValueError("DistillationTrainer needs the tokenizer as `processing_class` to mask batches.")
        kwargs.setdefault("data_collator", DataCollatorWithPadding(tokenizer))
        self.masking = masked_lm_collator(tokenizer, args.mlm_probability)
        super().__init__(model, args, *trainer_args, **kwargs)
        # compute_loss returns a per-batch mean: let the Trainer divide it over gradient-accumulation steps.
        self.loss_is_scaled_for_ga = False
        self.teacher.bert.requires_grad_(False).eval().to(self.args.device)
        if self.teacher.mlm_head is not None:
            self.teacher.mlm_head.requires_grad_(False).eval().to(self.args.device)
        self._loss_sums = {"train": defaultdict(int), "eval": defaultdict(int)}
        self._loss_counts = {"train": 0, "eval": 0}

    def weights(self) -> dict[str, float]:
        args = self.args
        return {
            "mlm": args.mlm_weight,
            "attention": args.attention_weight,
            "hidden": args.hidden_weight,
            "logit": args.logit_weight if self.teacher.mlm_head is not None else 0.0,
            "embedding": args.embedding_weight,
        }

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

    def distillation_losses(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each loss term (unweighted) for one batch."""
        weights = self.weights()
        inputs = self.mask(inputs)
        labels = inputs.pop("labels")
        masked = labels != -100
        real = inputs["attention_mask"].bool()
        with_attention = weights["attention"] > 0
        outputs = model(
            **inputs,
            prediction_mask=masked,
            output_hidden_states=True,
            output_attentions=with_attention,
        )
        targets = teacher_targets(
            self.teacher, inputs, self.layer_map, with_attention, masked if weights["logit"] > 0 else None
        )
        losses = {"mlm": F.cross_entropy(outputs.logits.float(), labels[masked])}
        pairs = list(zip(outputs.hidden_states[1:], self.layer_map, strict=True))
        losses["hidden"] = torch.stack(
            [cosine_loss(student, targets.hidden_states[k], real) for student, k in pairs]
        ).mean()
        if with_attention:
            losses["attention"] = mapped_attention_kl(outputs.attentions, targets.attentions, self.layer_map, real)
        if weights["logit"] > 0:
            losses["logit"] = logit_kl(outputs.logits, targets.logits, self.args.temperature)
        if weights["embedding"] > 0:
            losses["embedding"] = cosine_loss(outputs.hidden_states[0], targets.hidden_states[0], real)
        return losses

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        losses = self.distillation_losses(model, inputs)
        weights = self.weights()
        loss = sum(weights[name] * value for name, value in losses.items())
        phase = "train" if model.training else "eval"
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
            self._loss_sums[phase].clear()
            self._loss_counts[phase] = 0
        super().log(logs, start_time)


def mean_pool(hidden_states: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    weights = real.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp_min(1)


@torch.no_grad()
def agreement_report(
    student: MiniAlbertForMaskedLM, teacher: Teacher, batches: list[dict[str, torch.Tensor]], layers: list[int]
) -> dict[str, float]:
    """How closely the student follows the teacher on held-out masked batches.

    - `hidden_cosine`: cosine of the student's last hidden state and its mapped teacher layer, at real tokens;
    - `attention_kl`: attention KL(teacher || student) over the mapped layers;
    - `student_mlm_accuracy` / `teacher_mlm_accuracy`: top-1 accuracy at the masked tokens (teacher: with a head);
    - `sentence_spearman`: Spearman correlation between the teacher's and the student's pairwise cosine
      similarities of mean-pooled embeddings of the unmasked windows (what sentence-embedding users rely on).
    """
    from scipy.stats import spearmanr

    was_training = student.training
    student.eval()
    device = next(student.parameters()).device
    totals = defaultdict(float)
    real_tokens = masked_tokens = 0
    student_embeddings, teacher_embeddings = [], []
    for batch in batches:
        batch = {name: tensor.to(device) for name, tensor in batch.items() if name != "special_tokens_mask"}
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

        unmasked = dict(batch, input_ids=torch.where(masked, labels, batch["input_ids"]))
        student_states = student.minialbert(**unmasked).last_hidden_state
        teacher_states = teacher.bert(**unmasked).last_hidden_state
        student_embeddings.append(mean_pool(student_states, real))
        teacher_embeddings.append(mean_pool(teacher_states, real))

    report = {
        name: total / (masked_tokens if name.endswith("mlm_accuracy") else real_tokens)
        for name, total in totals.items()
    }
    similarities = []
    for embeddings in (student_embeddings, teacher_embeddings):
        normalised = F.normalize(torch.cat(embeddings).float(), dim=-1)
        upper = torch.triu_indices(len(normalised), len(normalised), offset=1)
        similarities.append((normalised @ normalised.T)[upper[0], upper[1]].cpu().numpy())
    report["sentence_spearman"] = float(spearmanr(*similarities).statistic)
    student.train(was_training)
    return {name: round(value, 4) for name, value in report.items()}


@dataclass
class StudentArguments:
    """Which teacher to distil and where the student starts."""

    teacher: str | None = field(
        default=None,
        metadata={"help": "BERT teacher: folder or Hub id (default: the bundled all-MiniLM-L6-v2)."},
    )
    student: str | None = field(
        default=None,
        metadata={"help": "Start from this MiniAlbert folder or Hub id instead of converting the teacher."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete a non-empty output_dir first instead of resuming from it."}
    )


def prepare_output_dir(output_dir: str, overwrite: bool, is_main_process: bool) -> str | None:
    """The checkpoint to resume from, as transformers' examples do; refuse a non-empty folder without checkpoints."""
    path = Path(output_dir)
    if not path.is_dir() or not any(path.iterdir()):
        return None
    if overwrite:
        if is_main_process:
            shutil.rmtree(path)
        return None
    checkpoint = get_last_checkpoint(output_dir)
    if checkpoint is None:
        raise ValueError(
            f"Output folder {output_dir!r} is not empty and holds no checkpoint to resume from; choose another "
            "folder or pass --overwrite_output_dir."
        )
    logger.info("Resuming from %s (pass --overwrite_output_dir to start over).", checkpoint)
    return checkpoint


def load_student(name_or_path: str) -> MiniAlbertForMaskedLM:
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=True)
    if config.model_type != MiniAlbertConfig.model_type:
        raise ValueError(
            f"--student {name_or_path!r} is a {config.model_type!r} model; pass a MiniAlbert folder (from minialbert "
            "convert or distill), or pass the BERT checkpoint as --teacher to convert it."
        )
    return MiniAlbertForMaskedLM.from_pretrained(name_or_path)


def held_out_batches(
    windows: Dataset, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, seed: int, batch_size: int
) -> list[dict]:
    """Held-out batches masked once with a fixed seed, so before/after reports score the same predictions."""
    collator = masked_lm_collator(tokenizer, mlm_probability, seed)
    return [
        collator([windows[i] for i in range(start, min(start + batch_size, len(windows)))])
        for start in range(0, len(windows), batch_size)
    ]


def run_distillation(
    student_arguments: StudentArguments,
    conversion_arguments: ConversionArguments,
    data_arguments: DataArguments,
    training_arguments: DistillationArguments,
) -> dict:
    """`minialbert distill`: convert (or load) a student, distil it with `DistillationTrainer`, save it Hub-ready
    and write `distillation_summary.json` beside it. Returns the summary."""
    resume_from = training_arguments.resume_from_checkpoint or prepare_output_dir(
        training_arguments.output_dir,
        student_arguments.overwrite_output_dir,
        training_arguments.process_index == 0,
    )
    teacher_name = student_arguments.teacher or bundled_teacher_path()
    teacher = load_teacher(teacher_name, conversion_arguments.revision)
    if student_arguments.student:
        student = load_student(student_arguments.student)
        tokenizer = AutoTokenizer.from_pretrained(student_arguments.student)
    else:
        if training_arguments.layer_map and not conversion_arguments.teacher_layer_map:
            conversion_arguments.teacher_layer_map = training_arguments.layer_map
        student = convert_bert_to_minialbert(teacher, conversion_arguments)
        tokenizer = AutoTokenizer.from_pretrained(conversion_arguments.tokenizer or teacher_name)

    with training_arguments.main_process_first(desc="Tokenising the corpus"):
        windows = tokenize_windows(load_text_corpus(data_arguments), tokenizer, data_arguments)
    trainer = DistillationTrainer(
        teacher,
        student,
        training_arguments,
        train_dataset=windows["train"],
        eval_dataset=windows["validation"],
        processing_class=tokenizer,
    )
    batches = held_out_batches(
        windows["validation"],
        tokenizer,
        training_arguments.mlm_probability,
        data_arguments.split_seed,
        training_arguments.per_device_eval_batch_size,
    )
    before = agreement_report(student.to(training_arguments.device), trainer.teacher, batches, trainer.layer_map)
    result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model()
    after = agreement_report(
        trainer.accelerator.unwrap_model(trainer.model), trainer.teacher, batches, trainer.layer_map
    )

    summary = {
        "teacher": teacher_name,
        "teacher_parameters": teacher.bert.num_parameters(),
        "student_parameters": student.num_parameters(),
        "layer_map": trainer.layer_map,
        "loss_weights": trainer.weights(),
        "train_windows": len(windows["train"]),
        "held_out_windows": len(windows["validation"]),
        "global_step": trainer.state.global_step,
        "processes": training_arguments.world_size,
        "train_runtime_seconds": round(result.metrics["train_runtime"], 1),
        "at_initialisation": before,
        "after_distillation": after,
    }
    if trainer.is_world_process_zero():
        Path(training_arguments.output_dir, "distillation_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict) -> str:
    lines = [
        f"teacher {summary['teacher']}: {summary['teacher_parameters'] / 1e6:.2f}M parameters; "
        f"student: {summary['student_parameters'] / 1e6:.2f}M; layer map {summary['layer_map']}",
        f"{summary['global_step']} steps on {summary['train_windows']} windows in "
        f"{summary['train_runtime_seconds']} s; held-out windows: {summary['held_out_windows']}",
        f"{'metric':<22} {'initialisation':>14} {'distilled':>10}",
    ]
    for name, value in summary["after_distillation"].items():
        lines.append(f"{name:<22} {summary['at_initialisation'][name]:>14.4f} {value:>10.4f}")
    return "\n".join(lines)
