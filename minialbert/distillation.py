"""Distil a BERT teacher into a MiniAlbert student with the stock `Trainer`: the losses, `DistillationTrainer`
and the agreement report. The `minialbert distill` job built on them is `minialbert.distill_job`.

Per batch, on real (non-padding) tokens only and in fp32, with the weights and options of a recipe (`RECIPES`):

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

import functools
import logging
import math
import os
import re
import time
import weakref
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from torch import nn
from torch.nn import functional as F
from transformers import (
    DataCollatorWithPadding,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from .convert import (
    Teacher,
    check_layer_map,
    layer_map,
    load_teacher,
)
from .data import (
    masked_lm_collator,
)
from .modeling_minialbert import MiniAlbertForMaskedLM
from .sentence_embeddings import SentenceModules, pool, read_sentence_modules

logger = logging.getLogger(__name__)

LOSS_NAMES = ("mlm", "attention", "hidden", "logit", "embedding", "sentence", "relational")

# Recipes as data: what each recipe field left unset defaults to. `recipe="auto"` picks "paper" for teachers with a
# masked-LM head and "sentence" for the rest; benchmarks/recipe_study.py measured the "sentence" choices.
RECIPES = {
    # Nouriborji et al.: every term on the masked input, the student's own masked-LM loss and the teacher's logits.
    "paper": {
        "mlm_weight": 1.0,
        "attention_weight": 3.0,
        "hidden_weight": 3.0,
        "logit_weight": 5.0,
        "embedding_weight": 0.0,
        "sentence_weight": 0.0,
        "relational_weight": 0.0,
        "hidden_loss": "cosine",
        "hidden_layers": "all",
        "sentence_loss": "cosine",
        "relational_loss": "mse",
        "distill_inputs": "masked",
        "elastic_depth": "off",
    },
    # For teachers without a masked-LM head (sentence encoders): no masked-LM term to compete with distillation,
    # and the teacher's states and pooled sentence embeddings followed on the text inference sees (no [MASK]).
    "sentence": {
        "mlm_weight": 0.0,
        "attention_weight": 0.0,
        "hidden_weight": 1.0,
        "logit_weight": 0.0,
        "embedding_weight": 0.0,
        "sentence_weight": 1.0,
        "relational_weight": 0.0,
        "hidden_loss": "cosine",
        "hidden_layers": "all",
        "sentence_loss": "cosine",
        "relational_loss": "mse",
        "distill_inputs": "unmasked",
        "elastic_depth": "off",
    },
}
RECIPE_CHOICES = {
    "hidden_loss": ("cosine", "mse"),
    "hidden_layers": ("all", "last"),
    "sentence_loss": ("cosine", "mse"),
    "relational_loss": ("mse", "kl"),
    "distill_inputs": ("masked", "unmasked"),
    "elastic_depth": ("off", "sum", "sample"),
}
# The terms a shallower depth adds under elastic depth: those read from its hidden states and attention maps. The
# embedding term is the same at every depth; masked-LM and logit terms train the full depth's head only.
DEPTH_LOSS_NAMES = ("attention", "hidden", "sentence", "relational")


def _recipe_field(help: str, choices: tuple[str, ...] | None = None):
    return field(default=None, metadata={"help": f"{help} (default: the recipe's).", "choices": choices})


@dataclass
class DistillationArguments(TrainingArguments):
    """`TrainingArguments` plus the distillation recipe; parsed by `HfArgumentParser` and saved with every checkpoint.

    `recipe` sets every loss weight and option left unset (None): `RECIPES` lists them. Defaults follow the paper
    where a CPU allows: AdamW at 5e-4 with weight decay 1e-4 and linear warm-up.
    """

    recipe: str = field(
        default="auto",
        metadata={
            "help": "'paper' (masked-LM, attention, hidden-state and logit losses on masked input), 'sentence' "
            "(hidden-state and pooled sentence-embedding losses on unmasked input, no masked-LM), or 'auto': "
            "'paper' for teachers with a masked-LM head, 'sentence' for the rest.",
            "choices": ("auto", *RECIPES),
        },
    )
    mlm_weight: float | None = _recipe_field("Weight of the student's own masked-LM loss")
    attention_weight: float | None = _recipe_field("Weight of the attention KL over mapped layers (0 skips the maps)")
    hidden_weight: float | None = _recipe_field("Weight of the hidden-state loss")
    logit_weight: float | None = _recipe_field("Weight of the masked-token logit KL (needs a teacher MLM head)")
    embedding_weight: float | None = _recipe_field("Weight of the embedding-output cosine loss")
    sentence_weight: float | None = _recipe_field(
        "Weight of the loss between pooled student and teacher sentence embeddings (the teacher's pooling)"
    )
    relational_weight: float | None = _recipe_field(
        "Weight of the in-batch relational loss: the student's matrix of cosine similarities between the batch's "
        "pooled sentence embeddings against the teacher's"
    )
    hidden_loss: str | None = _recipe_field("Hidden-state loss: 'cosine' or 'mse'", RECIPE_CHOICES["hidden_loss"])
    hidden_layers: str | None = _recipe_field(
        "Hidden-state loss on 'all' mapped layers or the 'last' only", RECIPE_CHOICES["hidden_layers"]
    )
    sentence_loss: str | None = _recipe_field("Sentence loss: 'cosine' or 'mse'", RECIPE_CHOICES["sentence_loss"])
    relational_loss: str | None = _recipe_field(
        "Relational loss: 'mse' between the similarity matrices (pairs of distinct sentences), or 'kl' between "
        "their row-wise softmaxes at --relational_temperature",
        RECIPE_CHOICES["relational_loss"],
    )
    distill_inputs: str | None = _recipe_field(
        "Input of the hidden, attention, embedding and sentence terms: 'masked' (the masked-LM batch) or 'unmasked' "
        "(the text as inference sees it; masked-LM and logit terms then take a second, masked pass)",
        RECIPE_CHOICES["distill_inputs"],
    )
    elastic_depth: str | None = _recipe_field(
        "Train every depth at once, so the student also serves at fewer recursions (num_recursions at load time): "
        "'sum' adds, every step, the terms of each shallower depth d (its first d recursions) against the teacher "
        "layers a d-recursion student follows, weighted by --depth_weights; 'sample' adds one shallower depth per "
        "step, drawn in proportion to its weight and weighted by their sum; 'off' trains the full depth only",
        RECIPE_CHOICES["elastic_depth"],
    )
    depth_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "With --elastic_depth: the weight of each shallower depth 1 .. N-1 against the full depth's 1 "
            "(default: 1 each)."
        },
    )
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the logit KL."})
    relational_temperature: float = field(
        default=0.05, metadata={"help": "Softmax temperature of the 'kl' relational loss, over cosine similarities."}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of real tokens masked for masked-LM."})
    layer_map: list[int] | None = field(
        default=None,
        metadata={
            "help": "Teacher layer (1-based) matched with each recursion (default: the student's recorded "
            "teacher_layer_map, else minialbert.layer_map)."
        },
    )
    agreement_steps: float = field(
        default=0.25,
        metadata={
            "help": "Log sentence agreement with the teacher on the held-out sets every this many steps, or this "
            "share of all steps when below 1, and at each epoch's end (0: at epoch ends only). `minialbert distill`"
            "'s summary keeps the curve."
        },
    )
    auto_bf16: bool = field(
        default=True,
        metadata={
            "help": "On a CPU with native bf16 (avx512_bf16 or amx_bf16), train under bf16 autocast when a timed "
            "matmul step shows it faster than fp32 (losses stay fp32). Ignored with --bf16/--fp16 or on accelerators."
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
    logging_steps: float = field(
        default=0.025,
        metadata={"help": "Log the loss terms every this many steps, or this share of all steps when below 1."},
    )
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Training sampler: 'group_by_length' (default: batches of similar length pad less; measured "
            "faster at equal agreement by benchmarks/recipe_study.py), 'random', 'sequential' or 'batch_rebalance'."
        },
    )

    def __post_init__(self):
        # Without this, accelerate treats a torchrun/accelerate launch on a machine without accelerators as
        # single-process: every process would train alone on the full data.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        if self.auto_bf16 and self.use_cpu and not (self.bf16 or self.fp16):
            self.bf16 = cpu_bf16_is_faster()
        super().__post_init__()
        if self.recipe not in ("auto", *RECIPES):
            raise ValueError(f"--recipe must be one of {['auto', *RECIPES]}, got {self.recipe!r}.")
        for name in (f"{loss}_weight" for loss in LOSS_NAMES):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"--{name} must be non-negative, got {getattr(self, name)}.")
        for name, choices in RECIPE_CHOICES.items():
            if getattr(self, name) not in (None, *choices):
                raise ValueError(f"--{name} must be one of {list(choices)}, got {getattr(self, name)!r}.")
        for name in ("temperature", "relational_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.depth_weights is not None and (
            not self.depth_weights or any(weight < 0 for weight in self.depth_weights) or not any(self.depth_weights)
        ):
            raise ValueError(
                f"--depth_weights must be non-negative weights, not all 0, one per shallower depth, got "
                f"{self.depth_weights}."
            )
        if self.agreement_steps < 0:
            raise ValueError(f"--agreement_steps must be 0 or positive, got {self.agreement_steps}.")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}.")


@dataclass
class Recipe:
    """The loss terms and options one run uses: `DistillationArguments` with the recipe's defaults filled in."""

    name: str
    weights: dict[str, float]
    hidden_loss: str
    hidden_layers: str
    sentence_loss: str
    relational_loss: str
    distill_inputs: str
    sentence_pooling: str
    reason: str
    elastic_depth: str = "off"
    # Elastic depth: the weight of each shallower depth 1 .. N-1 (the full depth weighs 1).
    depth_weights: list[float] | None = None


def recipe_name(args: DistillationArguments, teacher: Teacher) -> str:
    """The recipe `args.recipe` names; "auto": "paper" for a teacher with a masked-LM head, "sentence" otherwise."""
    if args.recipe != "auto":
        return args.recipe
    return "paper" if teacher.mlm_head is not None else "sentence"


def resolve_recipe(args: DistillationArguments, teacher: Teacher, sentence_modules: SentenceModules | None) -> Recipe:
    """Fill the fields left unset from the recipe, refusing terms the teacher cannot provide."""
    has_head = teacher.mlm_head is not None
    name = recipe_name(args, teacher)
    if args.recipe != "auto":
        reason = f"--recipe {args.recipe}"
    elif has_head:
        reason = "the teacher has a masked-LM head, so the student learns its predictions (the paper's recipe)"
    else:
        reason = (
            "the teacher has no masked-LM head: the student follows its hidden states and sentence embeddings "
            "on unmasked text (the best recipe measured by benchmarks/recipe_study.py)"
        )
    values = {
        key: default if getattr(args, key) is None else getattr(args, key) for key, default in RECIPES[name].items()
    }
    weights = {loss: float(values[f"{loss}_weight"]) for loss in LOSS_NAMES}
    if not has_head and weights["logit"] > 0:
        if args.logit_weight is not None:
            raise ValueError(
                f"--logit_weight {args.logit_weight} needs a teacher with a masked-LM head, and "
                f"{teacher.name_or_path} has none; drop --logit_weight or pass a BertForMaskedLM checkpoint."
            )
        logger.warning(
            "The teacher %s has no masked-LM head: the %s recipe's logit KL term (logit_weight=%s) drops out.",
            teacher.name_or_path,
            name,
            weights["logit"],
        )
        weights["logit"] = 0.0
    if not any(weights.values()):
        names = ", ".join(f"--{loss}_weight" for loss in LOSS_NAMES)
        raise ValueError(f"Every loss weight is 0: give a positive value to at least one of {names}.")
    pooling = sentence_modules.pooling if sentence_modules else "mean"
    if (weights["sentence"] > 0 or weights["relational"] > 0) and sentence_modules is None:
        logger.warning(
            "The teacher %s has no sentence-transformers Pooling module: the sentence loss pools by mean over real "
            "tokens.",
            teacher.name_or_path,
        )
    return Recipe(
        name=name,
        weights=weights,
        hidden_loss=values["hidden_loss"],
        hidden_layers=values["hidden_layers"],
        sentence_loss=values["sentence_loss"],
        relational_loss=values["relational_loss"],
        distill_inputs=values["distill_inputs"],
        sentence_pooling=pooling,
        reason=reason,
        elastic_depth=values["elastic_depth"],
        depth_weights=list(args.depth_weights) if args.depth_weights is not None else None,
    )


def resolve_depth_weights(recipe: Recipe, num_recursions: int) -> None:
    """Fill in `recipe.depth_weights` for a student of `num_recursions` (1 for each shallower depth by default),
    refusing weights that do not fit it."""
    if recipe.elastic_depth == "off":
        if recipe.depth_weights is not None:
            raise ValueError(
                f"--depth_weights {recipe.depth_weights} weigh shallower depths, which train only with elastic "
                "depth: add --elastic_depth sum (or sample), or drop --depth_weights."
            )
        return
    if num_recursions < 2:
        raise ValueError(
            f"--elastic_depth {recipe.elastic_depth} trains the shallower depths of a student, and this one has a "
            "single recursion; drop --elastic_depth or convert with --num_recursions 2 or more."
        )
    if recipe.depth_weights is None:
        recipe.depth_weights = [1.0] * (num_recursions - 1)
    elif len(recipe.depth_weights) != num_recursions - 1:
        raise ValueError(
            f"--depth_weights {recipe.depth_weights} must give one weight for each of the {num_recursions - 1} "
            f"shallower depths (1 to {num_recursions - 1}) of this {num_recursions}-recursion student."
        )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or amx_bf16); elsewhere it is emulated, and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether to train under bf16 autocast on this CPU: only with native bf16 in its flags, and, in a single
    process, only when a timed feed-forward step (forward and backward, BERT-small shapes) runs at least 10%
    faster than in fp32. Machines of one kind differ (without native support bf16 is emulated and slower), so this
    is decided per machine. Processes of a torchrun launch decide from the flags alone, so that all agree."""
    if not cpu_has_native_bf16():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True
    generator = torch.Generator().manual_seed(0)
    block = nn.Sequential(nn.Linear(384, 1536), nn.GELU(), nn.Linear(1536, 384))
    inputs = torch.randn(2048, 384, generator=generator)

    def seconds(enabled: bool) -> float:
        timings = []
        for _ in range(4):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                block(inputs).float().square().mean().backward()
            timings.append(time.perf_counter() - start)
        return min(timings[1:])

    fp32, bf16 = seconds(False), seconds(True)
    logger.info("bf16 autocast step %.1f ms vs fp32 %.1f ms on this CPU.", bf16 * 1e3, fp32 * 1e3)
    return bf16 < 0.9 * fp32


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


def check_fsdp_device(args: TrainingArguments) -> None:
    """Refuse `--fsdp` where accelerate would not apply it: it shards only processes that each have an accelerator
    (GPU, XPU, NPU, ...); CPU processes would train with plain DDP instead, silently."""
    if args.fsdp and args.device.type == "cpu":
        raise ValueError(
            f"--fsdp on CPU: accelerate applies FSDP only to processes with an accelerator (GPU, XPU, NPU, ...), so "
            f"these {args.world_size} CPU process(es) would train unsharded (DDP). Drop --fsdp to train with DDP on "
            "CPU; the student itself shards with torch's FSDP2 on CPU (README, Distillation)."
        )


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

    def terms(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each loss term (unweighted) for one batch."""
        weights = self.weights()
        predicts = weights["mlm"] > 0 or weights["logit"] > 0
        distills = any(weights[name] > 0 for name in ("attention", "hidden", "embedding", "sentence", "relational"))
        on_masked = self.recipe.distill_inputs == "masked"
        losses = {}
        if predicts or on_masked:
            losses |= self.pass_losses(model, self.mask(inputs), predicts=predicts, distills=distills and on_masked)
        if distills and not on_masked:
            losses |= self.pass_losses(model, self.unmasked(inputs), predicts=False, distills=True)
        return losses

    @staticmethod
    def unmasked(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model inputs of a batch as inference sees them: original tokens restored where a batch was masked
        (by `mask` for evaluation, or by a masking collator of your own), no labels."""
        unmasked = dict(inputs)
        unmasked.pop("special_tokens_mask", None)
        labels = unmasked.pop("labels", None)
        if labels is not None:
            unmasked["input_ids"] = torch.where(labels != -100, labels, unmasked["input_ids"])
        return unmasked

    def pass_losses(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], predicts: bool, distills: bool
    ) -> dict[str, torch.Tensor]:
        """The terms one forward pass of student and teacher gives: the masked-LM and logit terms (`predicts`,
        on a masked batch with `labels`) and the distillation terms (`distills`)."""
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
        depths = self.shallower_depths() if distills else {}
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
                sorted(set(self.layer_map).union(*depth_layers.values())),
                with_attention,
                prediction_mask if predicts and weights["logit"] > 0 else None,
            )
        if predicts and weights["logit"] > 0:
            losses["logit"] = logit_kl(outputs.logits, targets.logits, self.args.temperature)
        if not distills:
            return losses
        if weights["embedding"] > 0:
            losses["embedding"] = cosine_loss(outputs.hidden_states[0], targets.hidden_states[0], real)
        losses |= self.depth_losses(outputs.hidden_states, outputs.attentions, targets, self.layer_map, inputs)
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
    ) -> dict[str, torch.Tensor]:
        """The terms of the student's first `len(layers)` recursions (`hidden_states`: the embedding output and one
        state per recursion) against the teacher layers `layers`: hidden, attention, sentence and relational."""
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
                targets.hidden_states[-1].float(), inputs["attention_mask"], self.recipe.sentence_pooling
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
            raise ValueError(f"DistillationTrainer needs DistillationArguments, got {type(args).__name__}.")
        check_fsdp_device(args)
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
        self.sentence_modules = read_sentence_modules(self.teacher.name_or_path, self.teacher.revision)
        self.recipe = resolve_recipe(args, self.teacher, self.sentence_modules)
        resolve_depth_weights(self.recipe, len(self.layer_map))
        if student.num_recursions not in (None, student.num_hidden_layers):
            raise ValueError(
                f"The student runs {student.num_recursions} of its {student.num_hidden_layers} recursions "
                "(num_recursions): distillation trains the full depth; load it without num_recursions (add "
                "--elastic_depth sum to train the shallower depths too)."
            )
        logger.info("Distillation recipe %r: %s.", self.recipe.name, self.recipe.reason)
        tokenizer = kwargs.get("processing_class")
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise ValueError("DistillationTrainer needs the tokenizer as `processing_class` to mask batches.")
        kwargs.setdefault("data_collator", DataCollatorWithPadding(tokenizer))
        super().__init__(model, args, *trainer_args, **kwargs)
        # compute_loss returns a per-batch mean: let the Trainer divide it over gradient-accumulation steps.
        self.loss_is_scaled_for_ga = False
        self.teacher.bert.requires_grad_(False).eval().to(self.args.device)
        if self.teacher.mlm_head is not None:
            self.teacher.mlm_head.requires_grad_(False).eval().to(self.args.device)
        self.distillation = DistillationLoss(self.teacher, self.layer_map, self.recipe, tokenizer, self.args)
        self._loss_sums = {"train": defaultdict(int), "eval": defaultdict(int)}
        self._loss_counts = {"train": 0, "eval": 0}

    def weights(self) -> dict[str, float]:
        return self.distillation.weights()

    def distillation_losses(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each loss term (unweighted) for one batch: `DistillationLoss.terms`."""
        return self.distillation.terms(model, inputs)

    def mask(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.distillation.mask(inputs)

    unmasked = staticmethod(DistillationLoss.unmasked)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        losses = self.distillation_losses(model, inputs)
        weights = self.weights()  # a subclass's own terms included
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


def similarity_spearman(student_embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> float:
    """Spearman correlation between the student's and the teacher's pairwise cosine similarities of the same
    texts: 1 when the student ranks every pair of texts as the teacher does (what search and clustering use)."""
    from scipy.stats import spearmanr

    similarities = []
    for embeddings in (student_embeddings, teacher_embeddings):
        normalised = F.normalize(embeddings.float(), dim=-1)
        upper = torch.triu_indices(len(normalised), len(normalised), offset=1)
        similarities.append((normalised @ normalised.T)[upper[0], upper[1]].cpu().numpy())
    return float(spearmanr(*similarities).statistic)


@torch.no_grad()
def encode(model: nn.Module, batches: list[dict[str, torch.Tensor]], pooling: str = "mean") -> torch.Tensor:
    """Pooled last hidden states of a bare encoder (`MiniAlbertModel` or `BertModel`) over unmasked batches."""
    device = next(model.parameters()).device
    embeddings = []
    for batch in batches:
        batch = {name: tensor.to(device) for name, tensor in batch.items() if name != "special_tokens_mask"}
        embeddings.append(pool(model(**batch).last_hidden_state, batch["attention_mask"], pooling))
    return torch.cat(embeddings)


# The teacher never trains: its pooled embeddings of a held-out set are computed once per teacher and set, and reused
# by every scoring of a run (before, each point of the curve, after, each depth). Keyed by the set's identity (and
# whether the batches are the set itself or derived from it), which the entry keeps alive; the teacher's entries go
# with it.
_teacher_embeddings: "weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, bool], tuple[list, torch.Tensor]]]" = (
    weakref.WeakKeyDictionary()
)


def encode_teacher(
    teacher: Teacher, batches: list[dict[str, torch.Tensor]], source: list | None = None
) -> torch.Tensor:
    """`encode(teacher.bert, batches)`, computed once for the held-out set `source` (default: `batches` itself; a
    caller that rebuilds `batches` from the same set on every call passes the set)."""
    cache = _teacher_embeddings.setdefault(teacher.bert, {})
    held_out = batches if source is None else source
    key = (id(held_out), source is not None)  # the set's own batches and batches derived from it differ
    if key not in cache:
        cache[key] = (held_out, encode(teacher.bert, batches))
    return cache[key][1]


def sentence_batches(tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int, max_length: int = 128):
    """Padded, unmasked batches of `texts`, in order."""
    return [
        dict(tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                       return_tensors="pt"))
        for start in range(0, len(texts), batch_size)
    ]  # fmt: skip


@torch.no_grad()
def agreement_report(
    student: MiniAlbertForMaskedLM,
    teacher: Teacher,
    batches: list[dict[str, torch.Tensor]],
    layers: list[int],
    sentence_sets: dict[str, list[dict[str, torch.Tensor]]] | None = None,
) -> dict[str, float]:
    """How closely the student follows the teacher on held-out masked batches.

    - `hidden_cosine`: cosine of the student's last hidden state and its mapped teacher layer, at real tokens;
    - `attention_kl`: attention KL(teacher || student) over the mapped layers;
    - `student_mlm_accuracy` / `teacher_mlm_accuracy`: top-1 accuracy at the masked tokens (teacher: with a head);
    - `sentence_spearman`: `similarity_spearman` of mean-pooled embeddings of the unmasked windows;
    - and for each `name: batches` of `sentence_sets` (unmasked sentences from other sources, e.g.
      `ood_sentence_spearman`), the same on those batches.
    """
    was_training = student.training
    student.eval()
    device = next(student.parameters()).device
    totals = defaultdict(float)
    real_tokens = masked_tokens = 0
    unmasked_batches = []
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
        unmasked_batches.append(dict(batch, input_ids=torch.where(masked, labels, batch["input_ids"])))

    report = {
        name: total / (masked_tokens if name.endswith("mlm_accuracy") else real_tokens)
        for name, total in totals.items()
    }
    report["sentence_spearman"] = similarity_spearman(
        encode(student.minialbert, unmasked_batches), encode_teacher(teacher, unmasked_batches, source=batches)
    )
    for name, sentences in (sentence_sets or {}).items():
        report[name] = similarity_spearman(encode(student.minialbert, sentences), encode_teacher(teacher, sentences))
    student.train(was_training)
    return {name: round(value, 4) for name, value in report.items()}


@contextmanager
def running_depth(model: nn.Module, num_recursions: int | None):
    """Run `model` (any MiniAlbert) at another depth inside the block: its first `num_recursions` recursions."""
    config = model.config
    before, config.num_recursions = config.num_recursions, num_recursions
    try:
        yield model
    finally:
        config.num_recursions = before


@torch.no_grad()
def agreement_by_depth(
    student: MiniAlbertForMaskedLM, teacher: Teacher, sentence_sets: dict[str, list[dict[str, torch.Tensor]]]
) -> list[dict[str, float]]:
    """`similarity_spearman` with the teacher on each of `sentence_sets` (unmasked batches) at every depth of the
    student, 1 to all its recursions: what each `num_recursions` a user may load it with keeps. One row per depth,
    `{"num_recursions": d, name: score, ...}`."""
    was_training = student.training
    student.eval()
    teacher_embeddings = {name: encode_teacher(teacher, batches) for name, batches in sentence_sets.items()}
    report = []
    for depth in range(1, student.config.num_hidden_layers + 1):
        with running_depth(student, depth):
            report.append(
                {"num_recursions": depth}
                | {
                    name: round(similarity_spearman(encode(student.minialbert, batches), teacher_embeddings[name]), 4)
                    for name, batches in sentence_sets.items()
                }
            )
    student.train(was_training)
    return report


class SentenceAgreementCallback(TrainerCallback):
    """Log the student's sentence agreement with the teacher on held-out sets (e.g. `sentence_spearman` on
    held-out windows, `ood_sentence_spearman` on out-of-domain sentences) every `args.agreement_steps` and at the
    end of every epoch, with the seconds of training so far, into the Trainer's logs and log history, so
    checkpoints keep the curve and `report_to` integrations plot it."""

    def __init__(self, trainer: DistillationTrainer, held_out: dict[str, list[dict[str, torch.Tensor]]]):
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
        was_training = student.training
        student.eval()
        scores = {}
        for name, batches in self.held_out.items():
            embeddings = encode(student.minialbert, batches), encode_teacher(self.trainer.teacher, batches)
            scores[f"agreement_{name}"] = round(similarity_spearman(*embeddings), 4)
        student.train(was_training)
        # Logging clears `control.should_log`; keep it, or the Trainer would skip its own loss log of this step.
        should_log = control.should_log
        self.trainer.log(scores | {"agreement_train_seconds": round(self.seconds, 1)})
        control.should_log = should_log
        self.started = time.perf_counter()


def held_out_batches(
    windows: Dataset, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, seed: int, batch_size: int
) -> list[dict]:
    """Held-out batches masked once with a fixed seed, so before/after reports score the same predictions."""
    collator = masked_lm_collator(tokenizer, mlm_probability, seed)
    return [
        collator([windows[i] for i in range(start, min(start + batch_size, len(windows)))])
        for start in range(0, len(windows), batch_size)
    ]
