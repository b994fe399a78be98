"""Parameter-efficient tuning of MiniAlbert models.

Two tuning modes of the model's own, both freezing the embeddings, the projection and the shared layer:

- `"adapters"` (the paper's adapter tuning): only the per-recursion bottleneck adapters and the task head train;
- `"relaxed"` (relaxed-recursion tuning, Bae et al. 2024): only each recursion's low-rank relaxation and the head.

Modules that a mode needs and the model lacks are added as exact identities (zero up-projections), so switching
a mode on does not move the model's outputs. `save_tuned` writes only what was trained, as a safetensors file and a
JSON description, and `load_tuned` puts it back onto the base model.

PEFT works on every head too (LoRA, IA3, ...; see `PEFT_TARGET_MODULES`). Sharing matters there: the shared layer
is one set of `nn.Linear` modules called once per recursion, so a LoRA on it is one LoRA shared by every
recursion, whereas the relaxation of the `"relaxed"` mode is per recursion.
"""

import json
import logging
import os
import sys
from pathlib import Path

import torch
import transformers
from huggingface_hub import snapshot_download
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig

from .configuration_minialbert import head_of
from .errors import BadInputError
from .modeling_minialbert import MiniAlbertPreTrainedModel

logger = logging.getLogger(__name__)

TUNING_MODES = ("adapters", "relaxed")
TUNED_WEIGHTS_NAME = "tuned_parameters.safetensors"
TUNED_CONFIG_NAME = "minialbert_tuning.json"
TUNED_FILES = (TUNED_WEIGHTS_NAME, TUNED_CONFIG_NAME)

# Linear modules of the shared layer, by the short names PEFT's `target_modules` matches.
PEFT_TARGET_MODULES = {
    "query": "attention query projection",
    "key": "attention key projection",
    "value": "attention value projection",
    "attention.dense": "attention output projection",
    "ffn": "feed-forward up-projection (H -> intermediate)",
    "ffn_output": "feed-forward down-projection (intermediate -> H)",
}
# PEFT task types come from `HEADS` (configuration_minialbert). None: pass `modules_to_save=["classifier"]` yourself
# for multiple choice (the masked-LM head needs nothing). With `target_modules="all-linear"`, PEFT leaves out the
# output layer of masked-LM and SEQ_CLS heads only; for token classification and QA add
# `exclude_modules=["classifier", "qa_outputs"]` (BERT behaves the same).


def _add_missing_modules(model: MiniAlbertPreTrainedModel, mode: str, rank: int) -> None:
    config, encoder = model.config, model.base_model.encoder
    # The model may run from remote code (`trust_remote_code=True`): build new modules from its own classes.
    modeling = sys.modules[type(model.base_model).__module__]
    if mode == "adapters" and encoder.adapters is None:
        config.use_adapters = True
        # Only branch-normalised adapters start as identities (a post-norm one normalises even a zero branch).
        config.adapter_layout = "branch_norm"
        encoder.adapters = nn.ModuleList(
            modeling.MiniAlbertRecursionAdapters(config) for _ in range(config.num_hidden_layers)
        )
        new_modules = encoder.adapters
    elif mode == "relaxed" and encoder.relaxations is None:
        if rank < 1:
            raise BadInputError(
                f"Relaxed-recursion tuning needs a rank of at least 1, got recursion_lora_rank={rank}."
            )
        config.recursion_lora_rank = rank
        encoder.relaxations = nn.ModuleList(
            modeling.MiniAlbertRelaxation(config) for _ in range(config.num_hidden_layers)
        )
        new_modules = encoder.relaxations
    else:
        return
    for module in new_modules.modules():
        model._init_weights(module)
    new_modules.to(next(model.parameters()).device)


def enable_tuning(model: MiniAlbertPreTrainedModel, mode: str = "adapters", rank: int = 8) -> dict[str, float]:
    """Freeze everything but the parts `mode` trains and the task head; returns the trainable share.

    Args:
        model: any MiniAlbert head.
        mode: `"adapters"` (per-recursion bottleneck adapters, the paper) or `"relaxed"` (per-recursion low-rank
            relaxation of the shared layer, with its bias and LayerNorm deltas).
        rank: relaxation rank to add when `mode="relaxed"` and the model has none (ignored otherwise).

    Example:

    ```python
    >>> model = AutoModelForSequenceClassification.from_pretrained(student, num_labels=5, trust_remote_code=True)
    >>> enable_tuning(model, "adapters")  # {'trainable': ..., 'total': ..., 'share': ...}
    ```
    """
    if mode not in TUNING_MODES:
        raise BadInputError(f"Unknown tuning mode {mode!r}; use one of {', '.join(TUNING_MODES)}.")
    if getattr(getattr(model, "config", None), "model_type", None) != "minialbert":
        raise BadInputError(f"enable_tuning needs a MiniAlbert model, got {type(model).__name__}.")
    _add_missing_modules(model, mode, rank)
    encoder = model.base_model.encoder
    tuned = encoder.adapters if mode == "adapters" else encoder.relaxations
    frozen = {id(parameter) for parameter in model.base_model.parameters()}
    model.requires_grad_(False)
    tuned.requires_grad_(True)
    # The task head trains too, except weights it shares with the frozen base (the tied MLM decoder).
    for parameter in model.parameters():
        if id(parameter) not in frozen:
            parameter.requires_grad_(True)
    report = trainable_parameters(model)
    logger.info(
        "%s tuning: %d of %d parameters train (%.2f%%).",
        mode,
        report["trainable"],
        report["total"],
        100 * report["share"],
    )
    return report


def trainable_parameters(model: nn.Module) -> dict[str, float]:
    """Trainable and total unique parameters (tied weights counted once)."""
    unique = {id(parameter): parameter for parameter in model.parameters()}.values()
    trainable = sum(parameter.numel() for parameter in unique if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in unique)
    return {"trainable": trainable, "total": total, "share": round(trainable / total, 4)}


def save_tuned(model: MiniAlbertPreTrainedModel, output_dir: str | os.PathLike, base_model: str | None = None) -> int:
    """Write only the trainable parameters and what re-attaching them needs; returns the artifact size in bytes.

    `tuned_parameters.safetensors` holds the tensors (by their names in the tuned model) and
    `minialbert_tuning.json` the head class, the base model, and the config fields the tuning changed.
    """
    state = {
        name: parameter.detach().contiguous()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }
    if not state:
        raise BadInputError("The model has no trainable parameters: call enable_tuning first.")
    config = model.config
    description = {
        "head": type(model).__name__,
        "base_model": base_model or config.name_or_path or None,
        "config": {
            key: getattr(config, key)
            for key in (
                "use_adapters",
                "adapter_layout",
                "adapter_reduction_factor",
                "recursion_lora_rank",
                "id2label",
                "label2id",
                "problem_type",
            )
            if hasattr(config, key)  # configs of remote code older than a field lack it
        },
        "parameters": sorted(state),
    }
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    save_file(state, path / TUNED_WEIGHTS_NAME, metadata={"format": "pt"})
    (path / TUNED_CONFIG_NAME).write_text(json.dumps(description, indent=2))
    return sum(file.stat().st_size for file in (path / TUNED_WEIGHTS_NAME, path / TUNED_CONFIG_NAME))


def load_tuned(
    tuned_dir: str | os.PathLike,
    base_model: str | os.PathLike | None = None,
    revision: str | None = None,
    **from_pretrained_kwargs,
) -> MiniAlbertPreTrainedModel:
    """Load the base student with the tuned head class and config, then put the tuned parameters onto it.

    Args:
        tuned_dir: a folder written by `save_tuned`, or the Hub id of one pushed with `minialbert push`.
        base_model: the base student (default: the one `minialbert_tuning.json` names).
        revision: revision of `tuned_dir` when it is a Hub id.
        from_pretrained_kwargs: passed to the base model's `from_pretrained` (`token`, `cache_dir`, ...).
    """
    path = Path(tuned_dir)
    if not path.is_dir():
        path = Path(snapshot_download(str(tuned_dir), revision=revision, allow_patterns=list(TUNED_FILES)))
    description = json.loads((path / TUNED_CONFIG_NAME).read_text())
    base = base_model or description["base_model"]
    if base is None:
        raise BadInputError(f"{TUNED_CONFIG_NAME} names no base model; pass base_model.")
    config = AutoConfig.from_pretrained(base, **from_pretrained_kwargs)
    for key, value in description["config"].items():
        setattr(config, key, value)
    if config.id2label is not None:  # JSON turned its integer keys into strings
        config.id2label = {int(index): label for index, label in config.id2label.items()}
    auto_class = head_of(description["head"]).auto_class
    model = getattr(transformers, auto_class).from_pretrained(base, config=config, **from_pretrained_kwargs)
    state = load_file(path / TUNED_WEIGHTS_NAME)
    parameters = dict(model.named_parameters())
    missing = set(state) - set(parameters)
    if missing:
        raise BadInputError(f"{tuned_dir} holds parameters the base model lacks: {sorted(missing)[:5]}")
    with torch.no_grad():
        for name, tensor in state.items():
            parameters[name].copy_(tensor)
    return model
