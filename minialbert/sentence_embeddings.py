"""Sentence embeddings: read a teacher's sentence-transformers modules, pool like it, encode texts and score how
closely two encoders agree, and give the student the same modules so that
`SentenceTransformer(student_dir, trust_remote_code=True)` encodes like the teacher.

Only the module stacks this package can reproduce exactly are carried over: a Transformer, then Pooling (mean or
CLS token), then an optional Normalize. Configs are read as data; nothing from the teacher's folder is executed.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedTokenizerBase
from transformers.utils import cached_file

logger = logging.getLogger(__name__)

TRANSFORMER, POOLING, NORMALIZE = (
    f"sentence_transformers.models.{name}" for name in ("Transformer", "Pooling", "Normalize")
)
POOLING_MODES = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
# What `save_sentence_modules` writes, relative to the model folder: the files `minialbert push` uploads.
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "1_Pooling/config.json")


@dataclass
class SentenceModules:
    """How a sentence-transformers model turns token states into one embedding."""

    pooling: str  # a key of POOLING_MODES
    normalize: bool
    max_seq_length: int | None = None
    lowercase: bool = False


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Sentence embeddings from token states, as sentence-transformers' Pooling computes them (padding excluded)."""
    if pooling == "cls":
        return hidden_states[:, 0]
    weights = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


def sentence_batches(tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int, max_length: int = 128):
    """Padded, unmasked batches of `texts`, in order."""
    return [
        dict(tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length,
                       return_tensors="pt"))
        for start in range(0, len(texts), batch_size)
    ]  # fmt: skip


@torch.no_grad()
def encode(model: nn.Module, batches: list[dict[str, torch.Tensor]], pooling: str = "mean") -> torch.Tensor:
    """Pooled last hidden states of a bare encoder (`MiniAlbertModel` or `BertModel`) over unmasked batches."""
    device = next(model.parameters()).device
    embeddings = []
    for batch in batches:
        batch = {name: tensor.to(device) for name, tensor in batch.items() if name != "special_tokens_mask"}
        embeddings.append(pool(model(**batch).last_hidden_state, batch["attention_mask"], pooling))
    return torch.cat(embeddings)


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


def _read_json(name_or_path: str, filename: str, revision: str | None) -> dict | list | None:
    path = cached_file(
        name_or_path,
        filename,
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return json.loads(Path(path).read_text()) if path else None


def read_sentence_modules(name_or_path: str | None, revision: str | None = None) -> SentenceModules | None:
    """The teacher's Pooling/Normalize stack from its `modules.json`, or None when it has none this package can
    reproduce (the reason is logged)."""
    if name_or_path is None:
        return None
    modules = _read_json(name_or_path, "modules.json", revision)
    if not modules:
        return None
    types = [module["type"] for module in sorted(modules, key=lambda module: module["idx"])]
    if types not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, NORMALIZE]):
        logger.warning(
            "%s is a sentence-transformers model with modules %s; only Transformer -> Pooling (-> Normalize) is "
            "carried over to students, so this one gets none.",
            name_or_path,
            types,
        )
        return None
    pooling_path = next(module["path"] for module in modules if module["type"] == POOLING)
    pooling_config = _read_json(name_or_path, f"{pooling_path}/config.json", revision) or {}
    chosen = [mode for mode, key in POOLING_MODES.items() if pooling_config.get(key)]
    others = [key for key, value in pooling_config.items() if key.startswith("pooling_mode") and value]
    if len(chosen) != 1 or len(others) != 1:
        logger.warning(
            "%s pools with %s; only one of %s is carried over to students, so this one gets none.",
            name_or_path,
            others,
            list(POOLING_MODES.values()),
        )
        return None
    settings = _read_json(name_or_path, "sentence_bert_config.json", revision) or {}
    return SentenceModules(
        pooling=chosen[0],
        normalize=NORMALIZE in types,
        max_seq_length=settings.get("max_seq_length"),
        lowercase=settings.get("do_lower_case", False),
    )


def save_sentence_modules(modules: SentenceModules, folder: str | Path, hidden_size: int) -> None:
    """Write the sentence-transformers files (`SENTENCE_FILES`) that make `folder`, a saved student, load as a
    `SentenceTransformer` that encodes like the teacher."""
    folder = Path(folder)
    stack = [
        {"idx": 0, "name": "0", "path": "", "type": TRANSFORMER},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING},
    ]
    if modules.normalize:  # Normalize has no files, so no folder (the Hub cannot hold an empty one)
        stack.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": NORMALIZE})
    settings = {"do_lower_case": modules.lowercase}
    if modules.max_seq_length is not None:
        settings["max_seq_length"] = modules.max_seq_length
    pooling = {"word_embedding_dimension": hidden_size}
    pooling |= {key: mode == modules.pooling for mode, key in POOLING_MODES.items()}
    (folder / "1_Pooling").mkdir(exist_ok=True)
    for name, content in zip(SENTENCE_FILES, (stack, settings, pooling), strict=True):
        (folder / name).write_text(json.dumps(content, indent=2) + "\n")
