"""Distil a BERT teacher into a MiniAlbert student with the stock `Trainer`, one concern per module:

- `recipes`: every loss term and option, declared once; `DistillationArguments` and the resolved `Recipe`;
- `losses`: the loss terms as pure functions, what they need from the teacher (`teacher_targets`), and
  `DistillationLoss` (the recipe's loss apart from any loop);
- `trainer`: `DistillationTrainer`, the stock Trainer with that loss;
- `agreement`: how closely the student follows the teacher (reports, every depth, the curve's callback);
- `summary`: `DistillationSummary`, what a run reports.

The `minialbert distill` job built on them is `minialbert.distill_job`; its held-out sets, `minialbert.held_out`.
Each name loads its module on first use: reading a summary (`minialbert.hub`) does not load the Trainer.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "agreement": (
        "SentenceAgreementCallback",
        "agreement_by_depth",
        "agreement_report",
        "encode_teacher",
        "evaluating",
        "running_depth",
        "sentence_agreement",
    ),
    "losses": (
        "DistillationLoss",
        "TeacherTargets",
        "attention_kl",
        "bert_attention_probabilities",
        "cosine_loss",
        "logit_kl",
        "mapped_attention_kl",
        "masked_mean",
        "relational_loss",
        "teacher_targets",
    ),
    "recipes": (
        "DEPTH_LOSS_NAMES",
        "DEPTH_SCHEDULES",
        "LOSS_NAMES",
        "RECIPES",
        "RECIPE_CHOICES",
        "RECIPE_OPTIONS",
        "RECIPE_TERMS",
        "DepthSchedule",
        "DistillationArguments",
        "Recipe",
        "RecipeOption",
        "RecipeTerm",
        "recipe_name",
        "resolve_depth_weights",
        "resolve_recipe",
    ),
    "summary": ("DistillationSummary",),
    "trainer": ("DistillationTrainer",),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
