"""Distillation recipes: every loss term and option declared once (`RECIPE_TERMS`, `RECIPE_OPTIONS`), with its
default in each recipe, its choices and its help. The command-line arguments (`DistillationArguments`), their
validation, the resolved `Recipe` of a run, the loss-term loop (`minialbert.distillation.trainer`) and the summary's
recipe section all derive from these two tables: a new term or option is one row.
"""

import logging
from dataclasses import dataclass, field, make_dataclass

import torch
from transformers import TrainingArguments

from ..devices import cpu_bf16_is_faster
from ..errors import BadInputError
from ..sentence_embeddings import SentenceModules
from ..teacher import Teacher

logger = logging.getLogger(__name__)

# `recipe="auto"` picks "paper" for teachers with a masked-LM head and "sentence" for the rest;
# benchmarks/recipe_study.py measured the "sentence" choices.
RECIPE_NAMES = ("paper", "sentence")


@dataclass(frozen=True)
class RecipeTerm:
    """One loss term: `--{name}_weight`, its default weight in each recipe, and which student outputs it reads:
    "predictions" (the masked-LM head, at the full depth only), "embeddings" (the embedding output, the same at
    every depth) or "recursions" (hidden states and attention maps: each depth has its own under elastic depth)."""

    name: str
    paper: float
    sentence: float
    reads: str
    help: str


@dataclass(frozen=True)
class RecipeOption:
    """One option of how terms are computed: `--{name}`, its default in each recipe, its choices and help."""

    name: str
    paper: str
    sentence: str
    choices: tuple[str, ...]
    help: str


# Nouriborji et al. ("paper"): masked-LM, attention, hidden-state and logit terms, all on the masked input.
# "sentence", for teachers without a masked-LM head (sentence encoders): no masked-LM term to compete with
# distillation; the teacher's states and pooled sentence embeddings followed on the text inference sees (no [MASK]).
RECIPE_TERMS = (
    RecipeTerm("mlm", 1.0, 0.0, "predictions", "Weight of the student's own masked-LM loss"),
    RecipeTerm(
        "attention", 3.0, 0.0, "recursions", "Weight of the attention KL over mapped layers (0 skips the maps)"
    ),
    RecipeTerm("hidden", 3.0, 1.0, "recursions", "Weight of the hidden-state loss"),
    RecipeTerm("logit", 5.0, 0.0, "predictions", "Weight of the masked-token logit KL (needs a teacher MLM head)"),
    RecipeTerm("embedding", 0.0, 0.0, "embeddings", "Weight of the embedding-output cosine loss"),
    RecipeTerm(
        "sentence",
        0.0,
        1.0,
        "recursions",
        "Weight of the loss between pooled student and teacher sentence embeddings (the teacher's pooling)",
    ),
    RecipeTerm(
        "relational",
        0.0,
        0.0,
        "recursions",
        "Weight of the in-batch relational loss: the student's matrix of cosine similarities between the batch's "
        "pooled sentence embeddings against the teacher's",
    ),
)
RECIPE_OPTIONS = (
    RecipeOption("hidden_loss", "cosine", "cosine", ("cosine", "mse"), "Hidden-state loss: 'cosine' or 'mse'"),
    RecipeOption(
        "hidden_layers", "all", "all", ("all", "last"), "Hidden-state loss on 'all' mapped layers or the 'last' only"
    ),
    RecipeOption("sentence_loss", "cosine", "cosine", ("cosine", "mse"), "Sentence loss: 'cosine' or 'mse'"),
    RecipeOption(
        "relational_loss",
        "mse",
        "mse",
        ("mse", "kl"),
        "Relational loss: 'mse' between the similarity matrices (pairs of distinct sentences), or 'kl' between "
        "their row-wise softmaxes at --relational_temperature",
    ),
    RecipeOption(
        "distill_inputs",
        "masked",
        "unmasked",
        ("masked", "unmasked"),
        "Input of the hidden, attention, embedding and sentence terms: 'masked' (the masked-LM batch) or 'unmasked' "
        "(the text as inference sees it; masked-LM and logit terms then take a second, masked pass)",
    ),
    RecipeOption(
        "elastic_depth",
        "off",
        "off",
        ("off", "sum", "sample"),
        "Train every depth at once, so the student also serves at fewer recursions (num_recursions at load time): "
        "'sum' adds, every step, the terms of each shallower depth d (its first d recursions) against the teacher "
        "layers a d-recursion student follows, weighted by --depth_weights; 'sample' adds one shallower depth per "
        "step, drawn in proportion to its weight and weighted by their sum; 'off' trains the full depth only",
    ),
)

LOSS_NAMES = tuple(term.name for term in RECIPE_TERMS)
# The terms a shallower depth adds under elastic depth: those read from its hidden states and attention maps.
DEPTH_LOSS_NAMES = tuple(term.name for term in RECIPE_TERMS if term.reads == "recursions")
RECIPE_CHOICES = {option.name: option.choices for option in RECIPE_OPTIONS}
# Each recipe as data: what every argument it governs defaults to.
RECIPES = {
    recipe: {f"{term.name}_weight": getattr(term, recipe) for term in RECIPE_TERMS}
    | {option.name: getattr(option, recipe) for option in RECIPE_OPTIONS}
    for recipe in RECIPE_NAMES
}


DEPTH_SCHEDULES = ("full", "switch:F", "ramp:F", "grow:F", "sample:F")


@dataclass(frozen=True)
class DepthSchedule:
    """How many recursions each training step runs, by the share of training done (`progress`, in [0, 1)).

    A recursive student at d recursions is the same parameters as at N, and a step at depth 1 of 3 costs about 0.6
    of a full-depth step (the teacher's forward stays): the early steps train the shared weights cheaply, full
    depth comes later ("the loop switched on late"; recurrences grown during training, arXiv 2511.07384). None of
    these paid at equal time for the bundled teacher's default student (benchmarks/front.py, docs/distillation.md):
    `full` is the default.

    - `full`: every step at full depth;
    - `switch:F`: depth 1 until a share F of training is done, then full depth;
    - `ramp:F`: depth 1, 2, ..., N-1 in equal shares of the first F of training, then full depth;
    - `grow:F`: as `ramp:F`, but a step at depth d follows the first d layers of the run's own layer map, so each
      recursion keeps its teacher layer throughout (recurrences grown during training);
    - `sample:F`: until F, each step's depth is drawn uniformly from 1 .. N (the global RNG, which checkpoints
      restore); then full depth.

    Except under `grow`, a step at depth d follows the teacher layers a d-recursion student follows
    (`minialbert.teacher.layer_map`), as elastic depth's shallower depths do.
    """

    kind: str = "full"
    until: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "DepthSchedule":
        kind, _, share = text.partition(":")
        error = BadInputError(
            f"--depth_schedule must be one of {list(DEPTH_SCHEDULES)} with F a share of training in (0, 1], "
            f"got {text!r}; e.g. --depth_schedule switch:0.35."
        )
        if kind == "full" and not share:
            return cls()
        if kind not in ("switch", "ramp", "grow", "sample"):
            raise error
        try:
            until = float(share)
        except ValueError:
            raise error from None
        if not 0 < until <= 1:
            raise error
        return cls(kind, until)

    def __str__(self) -> str:
        return self.kind if self.kind == "full" else f"{self.kind}:{self.until:g}"

    def depth(self, progress: float, num_recursions: int) -> int:
        """The depth of the step taken at `progress`; `sample` draws it (one draw per call)."""
        if self.kind == "full" or progress >= self.until:
            return num_recursions
        if self.kind == "switch":
            return 1
        if self.kind in ("ramp", "grow"):
            return min(num_recursions, 1 + int(progress / self.until * (num_recursions - 1) + 1e-9))
        return int(torch.randint(1, num_recursions + 1, ()))


def _recipe_field(help: str, choices: tuple[str, ...] | None = None):
    return field(default=None, metadata={"help": f"{help} (default: the recipe's).", "choices": choices})


# One argument per term and option, None meaning "the recipe's"; `DistillationArguments` adds the rest.
_RecipeArguments = make_dataclass(
    "_RecipeArguments",
    [(f"{term.name}_weight", float | None, _recipe_field(term.help)) for term in RECIPE_TERMS]
    + [(option.name, str | None, _recipe_field(option.help, option.choices)) for option in RECIPE_OPTIONS],
    bases=(TrainingArguments,),
    namespace={"__module__": __name__},
)


@dataclass
class DistillationArguments(_RecipeArguments):
    """`TrainingArguments` plus the distillation recipe; parsed by `HfArgumentParser` and saved with every checkpoint.

    `recipe` sets every loss weight (`--{term}_weight`) and option left unset (None): `RECIPE_TERMS` and
    `RECIPE_OPTIONS` list them. Defaults follow the paper where a CPU allows: AdamW at 5e-4 with weight decay 1e-4
    and linear warm-up.
    """

    recipe: str = field(
        default="auto",
        metadata={
            "help": "'paper' (masked-LM, attention, hidden-state and logit losses on masked input), 'sentence' "
            "(hidden-state and pooled sentence-embedding losses on unmasked input, no masked-LM), or 'auto': "
            "'paper' for teachers with a masked-LM head, 'sentence' for the rest.",
            "choices": ("auto", *RECIPE_NAMES),
        },
    )
    depth_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "With --elastic_depth: the weight of each shallower depth 1 .. N-1 against the full depth's 1 "
            "(default: 1 each)."
        },
    )
    depth_schedule: str = field(
        default="full",
        metadata={
            "help": "How many recursions each step runs, by the share of training done: 'full' (every step), "
            "'switch:F' (depth 1 until the share F, then full), 'ramp:F' (depths 1 to N-1 in equal shares of the "
            "first F, then full), 'grow:F' (as ramp, each recursion following its own teacher layer throughout), "
            "'sample:F' (a depth drawn per step until F). Shallower steps cost less and train the same weights."
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
        if self.recipe not in ("auto", *RECIPE_NAMES):
            raise BadInputError(f"--recipe must be one of {['auto', *RECIPE_NAMES]}, got {self.recipe!r}.")
        for name in (f"{term.name}_weight" for term in RECIPE_TERMS):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise BadInputError(f"--{name} must be non-negative, got {getattr(self, name)}.")
        for option in RECIPE_OPTIONS:
            if getattr(self, option.name) not in (None, *option.choices):
                raise BadInputError(
                    f"--{option.name} must be one of {list(option.choices)}, got {getattr(self, option.name)!r}."
                )
        for name in ("temperature", "relational_temperature"):
            if getattr(self, name) <= 0:
                raise BadInputError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.depth_weights is not None and (
            not self.depth_weights or any(weight < 0 for weight in self.depth_weights) or not any(self.depth_weights)
        ):
            raise BadInputError(
                f"--depth_weights must be non-negative weights, not all 0, one per shallower depth, got "
                f"{self.depth_weights}."
            )
        DepthSchedule.parse(self.depth_schedule)
        if self.agreement_steps < 0:
            raise BadInputError(f"--agreement_steps must be 0 or positive, got {self.agreement_steps}.")
        if not 0 < self.mlm_probability < 1:
            raise BadInputError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}.")


def _describe(recipe) -> str:
    """One line: the recipe, why it was chosen, its non-zero weights and every option."""
    terms = ", ".join(f"{name} {weight:g}" for name, weight in recipe.weights.items() if weight)
    options = ", ".join(f"{option.name} {getattr(recipe, option.name)}" for option in RECIPE_OPTIONS)
    depth_weights = f" {recipe.depth_weights}" if recipe.depth_weights else ""
    return (
        f"recipe {recipe.name!r} ({recipe.reason}): {terms}; {options}{depth_weights}; "
        f"depth_schedule {recipe.depth_schedule}; {recipe.sentence_pooling} pooling"
    )


# The loss terms and options one run uses: `DistillationArguments` with the recipe's defaults filled in. A field per
# option, so a recipe reads `recipe.hidden_loss`, and `dataclasses.asdict` gives the summary's recipe section.
Recipe = make_dataclass(
    "Recipe",
    [("name", str), ("weights", dict[str, float])]
    + [(option.name, str) for option in RECIPE_OPTIONS]
    + [
        ("sentence_pooling", str),
        ("reason", str),
        # Elastic depth: the weight of each shallower depth 1 .. N-1 (the full depth weighs 1).
        ("depth_weights", list[float] | None, field(default=None)),
        # How many recursions each step runs (`DepthSchedule`); "full" for summaries written before it existed.
        ("depth_schedule", str, field(default="full")),
    ],
    namespace={"__module__": __name__, "describe": _describe},
)
Recipe.__doc__ = "The loss terms (`weights`) and options one run uses: `DistillationArguments` resolved by a recipe."


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
            raise BadInputError(
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
        raise BadInputError(f"Every loss weight is 0: give a positive value to at least one of {names}.")
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
        **{option.name: values[option.name] for option in RECIPE_OPTIONS},
        sentence_pooling=pooling,
        reason=reason,
        depth_weights=list(args.depth_weights) if args.depth_weights is not None else None,
        depth_schedule=str(DepthSchedule.parse(args.depth_schedule)),
    )


def resolve_depth_weights(recipe: Recipe, num_recursions: int) -> None:
    """Fill in `recipe.depth_weights` for a student of `num_recursions` (1 for each shallower depth by default),
    refusing weights that do not fit it."""
    if recipe.elastic_depth == "off":
        if recipe.depth_weights is not None:
            raise BadInputError(
                f"--depth_weights {recipe.depth_weights} weigh shallower depths, which train only with elastic "
                "depth: add --elastic_depth sum (or sample), or drop --depth_weights."
            )
        return
    if num_recursions < 2:
        raise BadInputError(
            f"--elastic_depth {recipe.elastic_depth} trains the shallower depths of a student, and this one has a "
            "single recursion; drop --elastic_depth or convert with --num_recursions 2 or more."
        )
    if recipe.depth_weights is None:
        recipe.depth_weights = [1.0] * (num_recursions - 1)
    elif len(recipe.depth_weights) != num_recursions - 1:
        raise BadInputError(
            f"--depth_weights {recipe.depth_weights} must give one weight for each of the {num_recursions - 1} "
            f"shallower depths (1 to {num_recursions - 1}) of this {num_recursions}-recursion student."
        )
