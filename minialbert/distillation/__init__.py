"""Distil a BERT teacher into a MiniAlbert student with the stock `Trainer`, one concern per module:

- `recipes`: every loss term and option, declared once; `DistillationArguments` and the resolved `Recipe`;
- `losses`: the loss terms as pure functions, and what they need from the teacher (`teacher_targets`);
- `trainer`: `DistillationLoss` (the loss apart from any loop) and `DistillationTrainer`;
- `agreement`: how closely the student follows the teacher (reports, every depth, the curve's callback);
- `summary`: `DistillationSummary`, what a run reports.

The `minialbert distill` job built on them is `minialbert.distill_job`; its held-out sets, `minialbert.held_out`.
"""

from .agreement import (
    SentenceAgreementCallback,
    agreement_by_depth,
    agreement_report,
    encode_teacher,
    evaluating,
    running_depth,
    sentence_agreement,
)
from .losses import (
    TeacherTargets,
    attention_kl,
    bert_attention_probabilities,
    cosine_loss,
    logit_kl,
    mapped_attention_kl,
    masked_mean,
    relational_loss,
    teacher_targets,
)
from .recipes import (
    DEPTH_LOSS_NAMES,
    LOSS_NAMES,
    RECIPE_CHOICES,
    RECIPE_OPTIONS,
    RECIPE_TERMS,
    RECIPES,
    DistillationArguments,
    Recipe,
    RecipeOption,
    RecipeTerm,
    recipe_name,
    resolve_depth_weights,
    resolve_recipe,
)
from .summary import DistillationSummary
from .trainer import DistillationLoss, DistillationTrainer

__all__ = [
    "DEPTH_LOSS_NAMES",
    "LOSS_NAMES",
    "RECIPES",
    "RECIPE_CHOICES",
    "RECIPE_OPTIONS",
    "RECIPE_TERMS",
    "DistillationArguments",
    "DistillationLoss",
    "DistillationSummary",
    "DistillationTrainer",
    "Recipe",
    "RecipeOption",
    "RecipeTerm",
    "SentenceAgreementCallback",
    "TeacherTargets",
    "agreement_by_depth",
    "agreement_report",
    "attention_kl",
    "bert_attention_probabilities",
    "cosine_loss",
    "encode_teacher",
    "evaluating",
    "logit_kl",
    "mapped_attention_kl",
    "masked_mean",
    "recipe_name",
    "relational_loss",
    "resolve_depth_weights",
    "resolve_recipe",
    "running_depth",
    "sentence_agreement",
    "teacher_targets",
]
