"""Open the published MiniALBERT checkpoints (Nouriborji et al.; Hub org `nlpie`) as MiniAlbert folders.

The authors' checkpoints need their own repository on `sys.path`, whose code does not import on transformers 5.
`import_published` reads a checkpoint's config and weights as data (no code from it runs; pickles only with
`torch.load(weights_only=True)`), maps every key onto `MiniAlbertConfig(embedding_layout="albert",
adapter_layout="post_norm", mlm_decoder="untied")` and writes a Hub-ready folder that loads anywhere with
`AutoModel*.from_pretrained(..., trust_remote_code=True)`.

The published layout (the authors' MIT-licensed `minialbert_modeling.py`): a transformers `AlbertModel` as
`albert.albert` without its own `embedding_hidden_mapping_in`, the E->H `albert.projector` after the embedding
LayerNorm (none where E == H), per-recursion post-norm adapters
`albert.att_adapters.{i}` / `albert.mlp_adapters.{i}` (`block.0` down, `block.2` up, `norm`), and heads
`vocab_transform` / `vocab_layer_norm` / `vocab_projector` (masked LM) or `classifier`.
"""

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from huggingface_hub import snapshot_download
from safetensors.torch import load_file

from .configuration_minialbert import MiniAlbertConfig
from .errors import BadInputError, as_bad_input
from .folders import TOKENIZER_FILES
from .modeling_minialbert import (
    MiniAlbertForMaskedLM,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
)

logger = logging.getLogger(__name__)

PUBLISHED_CHECKPOINTS = (
    "nlpie/miniALBERT-128",
    "nlpie/bio-miniALBERT-128",
    "nlpie/clinical-miniALBERT-312",
    "nlpie/new-miniAlbert-128",
)
# The published heads by the class name their configs record, and the keys that give a head away.
HEAD_CLASSES = {
    "MaskedLM": MiniAlbertForMaskedLM,
    "SequenceClassification": MiniAlbertForSequenceClassification,
    "TokenClassification": MiniAlbertForTokenClassification,
}
LAYER = "encoder.albert_layer_groups.0.albert_layers.0."
# Published name (below the body prefix) -> MiniAlbertModel name.
BODY_KEYS = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "embeddings.LayerNorm",
    **{f"{LAYER}attention.{name}": f"encoder.layer.attention.{name}" for name in ("query", "key", "value", "dense")},
    f"{LAYER}attention.LayerNorm": "encoder.layer.attention_layer_norm",
    f"{LAYER}ffn": "encoder.layer.ffn",
    f"{LAYER}ffn_output": "encoder.layer.ffn_output",
    f"{LAYER}full_layer_layer_norm": "encoder.layer.ffn_layer_norm",
}
ADAPTER_PARTS = {"block.0": "down", "block.2": "up", "norm": "LayerNorm"}
MLM_KEYS = {"vocab_transform": "predictions.dense", "vocab_layer_norm": "predictions.LayerNorm",
            "vocab_projector": "predictions.decoder"}  # fmt: skip
# Stored but unused by the published models: ALBERT's pooler (the heads read the CLS state) and a buffer.
UNUSED = ("albert.pooler.", "embeddings.position_ids")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class ImportArguments:
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) of SOURCE."})
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Folder or Hub id of the tokenizer, when SOURCE has none (the teacher's, e.g. "
                          "google-bert/bert-base-uncased)."},
    )  # fmt: skip


def read_checkpoint(source: str | os.PathLike, revision: str | None = None) -> tuple[Path, str | None]:
    """A local folder as is, or a Hub id downloaded (config, weights and tokenizer files only): the folder and the
    commit it holds (None for local folders)."""
    if Path(source).is_dir():
        return Path(source), None
    folder = Path(
        snapshot_download(
            str(source),
            revision=revision,
            allow_patterns=["config.json", *WEIGHT_FILES, *TOKENIZER_FILES],
        )
    )
    return folder, folder.name  # snapshot folders are named after their commit


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors: safetensors, or a pickle read with `weights_only=True` (no code runs)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            try:
                if name == "model.safetensors":
                    return load_file(path)
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # safetensors' and torch's errors for a cut-off or corrupted file
                raise BadInputError(
                    f"{path} cannot be read ({type(error).__name__}: {error}): the file is cut off or corrupted; "
                    "download or copy it again."
                ) from error
    raise BadInputError(f"{folder} has no model.safetensors or pytorch_model.bin; nothing to import.")


def is_published_layout(keys: set[str]) -> bool:
    """Whether `keys` are the published MiniALBERT layout, by what it has: the E->H projector (only where E != H),
    per-recursion adapters, the masked-LM head's `vocab_projector`, or an ALBERT body whose own E->H mapping the
    authors' code removed (the one sign every published checkpoint carries, E == H and adapter-free included)."""
    markers = (r"(^|\.)projector\.weight$", r"(^|\.)(att|mlp)_adapters\.\d+\.", r"^vocab_projector\.weight$")
    if any(re.search(marker, key) for marker in markers for key in keys):
        return True
    has_albert_body = any(".albert_layer_groups." in key for key in keys)
    return has_albert_body and not any(".embedding_hidden_mapping_in." in key for key in keys)


def describe_other_kinds(config: dict, keys: set[str], folder: Path) -> None:
    """Raise a BadInputError naming what `folder` holds and which command fits, unless it is a published
    MiniALBERT checkpoint."""
    if config.get("model_type") == MiniAlbertConfig.model_type:
        raise BadInputError(f"{folder} already holds a MiniAlbert model of this package: use it directly.")
    if is_published_layout(keys):
        return
    if any(".albert_layer_groups." in key for key in keys):
        raise BadInputError(
            f"{folder} holds an ALBERT model (its own embedding_hidden_mapping_in, no MiniALBERT projector, adapters "
            "or heads): it loads with transformers' AlbertModel; `minialbert import-published` reads only the "
            "MiniALBERT checkpoints."
        )
    if any(re.search(r"(^|\.)encoder\.layer\.\d+\.", key) for key in keys):
        raise BadInputError(
            f"{folder} holds a BERT model ({config.get('model_type')!r}): make a student of it with "
            "`minialbert convert`."
        )
    raise BadInputError(
        f"{folder} is not a published MiniALBERT checkpoint (model_type {config.get('model_type')!r})."
    )


def config_from_published(published: dict, head: type, folder: Path) -> MiniAlbertConfig:
    """The MiniAlbertConfig of a published config (ALBERT- or BERT-typed, with the MiniALBERT fields)."""
    if published.get("num_hidden_groups", 1) != 1 or published.get("inner_group_num", 1) != 1:
        raise BadInputError(f"{folder}/config.json shares more than one layer group; MiniALBERT shares one layer.")
    missing = [name for name in ("embedding_size", "hidden_size", "num_hidden_layers", "vocab_size")
               if name not in published]  # fmt: skip
    if missing:
        raise BadInputError(f"{folder}/config.json lacks {', '.join(missing)}: it is not a MiniALBERT config.")
    if published.get("hidden_act", "gelu") != "gelu":
        raise BadInputError(
            f"{folder}/config.json has hidden_act {published['hidden_act']!r}: the published adapters and masked-LM "
            "transform apply exact GELU, which MiniAlbert ties to hidden_act, so only 'gelu' imports exactly."
        )
    copied = (
        "vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
        "max_position_embeddings", "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id",
    )  # fmt: skip
    values = {name: published[name] for name in copied if name in published}
    if head in (MiniAlbertForSequenceClassification, MiniAlbertForTokenClassification):  # the labels it predicts
        values |= {name: published[name] for name in ("id2label", "label2id") if name in published}
    with as_bad_input(f"{folder}/config.json: "):
        return MiniAlbertConfig(
            **values,
            classifier_dropout=published.get("classifier_dropout_prob", published.get("classifier_dropout")),
            use_adapters=bool(published.get("use_adapter", False)),
            adapter_reduction_factor=published.get("reduction_factor", 16),
            embedding_layout="albert",
            adapter_layout="post_norm",
            mlm_decoder="untied",
            architectures=[head.__name__],
        )


def head_class(published: dict, keys: set[str], folder: Path) -> type:
    """The head to import into: the class the config names, else the one the keys give away."""
    for name in published.get("architectures") or []:
        for suffix, model_class in HEAD_CLASSES.items():
            if name.endswith(suffix):
                return model_class
    if "vocab_projector.weight" in keys:
        return MiniAlbertForMaskedLM
    if "classifier.weight" in keys:
        raise BadInputError(
            f"{folder}/config.json names no head class ({published.get('architectures')}) and a classifier "
            'can be per sequence or per token: add "architectures": ["MiniAlbertForSequenceClassification"] '
            "(or ...ForTokenClassification) to a copy of it."
        )
    return MiniAlbertModel


def map_keys(
    weights: dict[str, torch.Tensor], head: type, num_recursions: int
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Rename every published key (a key that has no place is a BadInputError naming it); also return, for each
    MiniAlbert key, the published key it comes from, for errors about keys the checkpoint lacks."""
    wrapped = "albert.albert.embeddings.word_embeddings.weight" in weights  # a head around the body
    root = "albert." if wrapped else ""
    body_prefix = "" if head is MiniAlbertModel else "minialbert."
    names = {}
    for published, ours in BODY_KEYS.items():
        names[f"{root}albert.{published}"] = f"{body_prefix}{ours}"
    names[f"{root}projector"] = f"{body_prefix}embeddings.projection"
    for recursion in range(num_recursions):
        for kind, position in (("att_adapters", "before_attention"), ("mlp_adapters", "before_ffn")):
            for part, module in ADAPTER_PARTS.items():
                names[f"{root}{kind}.{recursion}.{part}"] = (
                    f"{body_prefix}encoder.adapters.{recursion}.{position}.{module}"
                )
    if head is MiniAlbertForMaskedLM:
        names |= MLM_KEYS
    elif head is not MiniAlbertModel:
        names["classifier"] = "classifier"

    mapped, unexpected = {}, []
    for key, tensor in weights.items():
        module, _, parameter = key.rpartition(".")
        if module in names and parameter in ("weight", "bias"):
            mapped[f"{names[module]}.{parameter}"] = tensor
        elif not any(marker in key for marker in UNUSED):
            unexpected.append(key)
    if unexpected:
        raise BadInputError(f"Keys with no place in a MiniAlbert model: {', '.join(sorted(unexpected)[:8])}.")
    sources = {
        f"{ours}.{name}": f"{published}.{name}" for published, ours in names.items() for name in ("weight", "bias")
    }
    return mapped, sources


def published_tokenizer(folder: Path, tokenizer: str | None):
    """The checkpoint's tokenizer, its class read from tokenizer_config.json as data (AutoTokenizer would load
    the checkpoint's config, and with it any code its auto_map names)."""
    if tokenizer:
        return transformers.AutoTokenizer.from_pretrained(tokenizer)
    settings = folder / "tokenizer_config.json"
    name = json.loads(settings.read_text()).get("tokenizer_class") if settings.is_file() else None
    if name and re.fullmatch(r"\w+Tokenizer(Fast)?", name) and hasattr(transformers, name):
        return getattr(transformers, name).from_pretrained(folder)
    if (folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file():
        return transformers.BertTokenizerFast.from_pretrained(folder)
    raise BadInputError(f"{folder} has no tokenizer files; pass --tokenizer with the teacher's tokenizer.")
