"""MiniAlbert configuration.

This file is uploaded to the Hugging Face Hub next to the weights and runs there under
`trust_remote_code=True`: it may import only torch, transformers' public API and
`modeling_minialbert`.
"""

from typing import NamedTuple

from transformers import PretrainedConfig
from transformers.activations import ACT2FN


class Head(NamedTuple):
    """What the rest of the ecosystem needs to know about one MiniAlbert head class."""

    auto_class: str  # the transformers Auto class that loads it
    pipeline_tag: str | None  # the Hub's task id (None: the Hub has no pipeline for it)
    peft_task_type: str | None  # PEFT's `task_type` (None: see minialbert.tuning)


# The one table of heads, by model class name; the Auto-class map, Hub tags and PEFT task types derive from it.
HEADS = {
    "MiniAlbertModel": Head("AutoModel", "feature-extraction", "FEATURE_EXTRACTION"),
    "MiniAlbertForMaskedLM": Head("AutoModelForMaskedLM", "fill-mask", None),
    "MiniAlbertForSequenceClassification": Head(
        "AutoModelForSequenceClassification", "text-classification", "SEQ_CLS"
    ),
    "MiniAlbertForTokenClassification": Head("AutoModelForTokenClassification", "token-classification", "TOKEN_CLS"),
    "MiniAlbertForQuestionAnswering": Head("AutoModelForQuestionAnswering", "question-answering", "QUESTION_ANS"),
    "MiniAlbertForMultipleChoice": Head("AutoModelForMultipleChoice", None, None),
}
# Where the Hub finds each class: `save_pretrained` alone would record only the class being saved,
# so the map for every head is declared here and travels with every saved config.
AUTO_MAP = {"AutoConfig": "configuration_minialbert.MiniAlbertConfig"} | {
    head.auto_class: f"modeling_minialbert.{name}" for name, head in HEADS.items()
}


EMBEDDING_LAYOUTS = ("bert", "albert")
ADAPTER_LAYOUTS = ("branch_norm", "post_norm")
MLM_DECODERS = ("tied", "untied")


def head_of(name: str) -> Head:
    """The `HEADS` row of the head class `name`, or a ValueError that names the known heads."""
    if name not in HEADS:
        raise ValueError(f"Unknown MiniAlbert head {name!r}; the heads are {', '.join(HEADS)}.")
    return HEADS[name]


def check_num_recursions(num_recursions: int | None, num_hidden_layers: int) -> None:
    """Elastic depth runs a prefix of the recursions the model was built (and trained) with, never more."""
    if num_recursions is None:
        return
    if isinstance(num_recursions, bool) or not isinstance(num_recursions, int) or not 1 <= num_recursions:
        raise ValueError(
            f"`num_recursions` must be a positive integer (or None for all {num_hidden_layers}), got "
            f"{num_recursions!r}."
        )
    if num_recursions > num_hidden_layers:
        raise ValueError(
            f"`num_recursions` {num_recursions} is more than the {num_hidden_layers} recursions this model holds "
            f"weights for; pass a value from 1 to {num_hidden_layers}."
        )


class MiniAlbertConfig(PretrainedConfig):
    r"""
    Configuration of a MiniAlbert model: a recursive transformer whose single shared layer is applied
    `num_hidden_layers` times, with factorised word embeddings and optional per-recursion adapters
    (Nouriborji et al., "MiniALBERT", EACL 2023) and per-recursion low-rank relaxation (Bae et al.,
    "Relaxed Recursive Transformers", 2024).

    Args:
        vocab_size (`int`, defaults to 30522): Size of the token vocabulary.
        embedding_size (`int`, defaults to 128): Width E of the word embeddings. When it differs from
            `hidden_size`, word embeddings are projected up to `hidden_size` and the masked-LM head projects
            back down to E before its decoder, which is tied to the word embeddings.
        hidden_size (`int`, defaults to 768): Width H of the hidden states.
        num_hidden_layers (`int`, defaults to 6): Number of recursions, i.e. how many times the one shared
            transformer layer is applied. More recursions cost compute, not parameters.
        num_recursions (`int`, *optional*): Elastic depth: run only the first `num_recursions` recursions (each
            with its own adapters and relaxation) of the `num_hidden_layers` the model holds weights for, for a
            faster, shallower model; `None` runs them all. Set it when loading:
            `AutoModel.from_pretrained(folder, trust_remote_code=True, num_recursions=2)`.
        num_attention_heads (`int`, defaults to 12): Attention heads; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 3072): Width of the feed-forward block.
        hidden_act (`str`, defaults to `"gelu"`): Activation of the feed-forward block, MLM head and adapters;
            any key of `transformers.activations.ACT2FN`.
        hidden_dropout_prob (`float`, defaults to 0.1): Dropout on embeddings and sub-block outputs.
        attention_probs_dropout_prob (`float`, defaults to 0.1): Dropout on attention probabilities.
        max_position_embeddings (`int`, defaults to 512): Longest sequence the position embeddings cover.
        type_vocab_size (`int`, defaults to 2): Number of token types (segments).
        initializer_range (`float`, defaults to 0.02): Standard deviation of the normal weight initialiser.
        layer_norm_eps (`float`, defaults to 1e-12): Epsilon of every LayerNorm.
        pad_token_id (`int`, defaults to 0): Padding token; its embedding starts at zero.
        classifier_dropout (`float`, *optional*): Dropout before classification heads; defaults to
            `hidden_dropout_prob`.
        use_adapters (`bool`, defaults to `True`): Give each recursion its own bottleneck adapters, one before
            the attention sub-block and one before the feed-forward sub-block (the paper's layer-wise adaptation).
        adapter_reduction_factor (`int`, defaults to 16): Adapter bottleneck width is
            `hidden_size // adapter_reduction_factor`.
        recursion_lora_rank (`int`, defaults to 0): Rank of each recursion's own low-rank delta on the shared
            layer's linear weights ("relaxed recursion"); 0 turns relaxation off. Each relaxed recursion also
            gets its own bias and LayerNorm deltas, so a full-rank relaxation (`hidden_size`) can represent
            `num_hidden_layers` distinct layers exactly.
        embedding_layout (`str`, defaults to `"bert"`): `"bert"`: only the word embeddings are E wide and are
            projected to H before the H-wide position and token-type embeddings and LayerNorm (a BERT teacher's
            block carries over). `"albert"`: words, positions and token types at width E, the LayerNorm at E,
            then the projection to H (ALBERT's and the published MiniALBERT checkpoints' layout).
        adapter_layout (`str`, defaults to `"branch_norm"`): `"branch_norm"`: the adapter normalises its input
            on the branch, `x + up(act(down(LayerNorm(x))))`, and starts as an identity. `"post_norm"`:
            `LayerNorm(x + up(act(down(x))))`, the published MiniALBERT checkpoints' adapters.
        mlm_decoder (`str`, defaults to `"tied"`): The masked-LM decoder's layout. `"tied"`: the head projects to E
            and decodes at width E, with the word embeddings as its weights (unless `tie_word_embeddings=False`).
            `"untied"`: an H-wide decoder with its own weights (the published checkpoints').
        tie_word_embeddings (`bool`, *optional*): Whether the E-wide decoder shares the word embeddings' weights;
            defaults to `True` for `mlm_decoder="tied"`. `False` keeps the tied layout with a decoder of its own, as
            ALBERT's `tie_word_embeddings=False` does. An `"untied"` (H-wide) decoder cannot share the E-wide
            embeddings, so it takes `False` only.
        bos_token_id (`int`, *optional*): Beginning-of-sequence token, when the tokenizer has one (BERT's has not).
        eos_token_id (`int`, *optional*): End-of-sequence token, when the tokenizer has one.
        source_checkpoint (`str`, *optional*): Provenance, written by `minialbert import-published`: the
            published checkpoint (Hub id or folder) this model was imported from.
        source_revision (`str`, *optional*): That checkpoint's Hub revision (commit), when it came from the Hub.
        teacher_name_or_path (`str`, *optional*): Provenance, written by the converter: the BERT checkpoint
            (Hub id or folder) the student was initialised from and is distilled against.
        teacher_revision (`str`, *optional*): The teacher's Hub revision (commit) when it came from the Hub.
        teacher_layer_map (`list[int]`, *optional*): For each recursion, the 1-based teacher layer it stands for;
            the converter initialises from it and distillation matches against it.
        conversion_init (`str`, *optional*): The converter's shared-layer initialisation strategy.

    Example:

    ```python
    >>> from minialbert import MiniAlbertConfig, MiniAlbertModel
    >>> config = MiniAlbertConfig(embedding_size=128, hidden_size=768, num_hidden_layers=6)
    >>> model = MiniAlbertModel(config)
    ```
    """

    model_type = "minialbert"

    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_size: int = 128,
        hidden_size: int = 768,
        num_hidden_layers: int = 6,
        num_recursions: int | None = None,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        pad_token_id: int = 0,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        classifier_dropout: float | None = None,
        use_adapters: bool = True,
        adapter_reduction_factor: int = 16,
        recursion_lora_rank: int = 0,
        teacher_name_or_path: str | None = None,
        teacher_revision: str | None = None,
        teacher_layer_map: list[int] | None = None,
        conversion_init: str | None = None,
        embedding_layout: str = "bert",
        adapter_layout: str = "branch_norm",
        mlm_decoder: str = "tied",
        source_checkpoint: str | None = None,
        source_revision: str | None = None,
        tie_word_embeddings: bool | None = None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_recursions = num_recursions
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.classifier_dropout = classifier_dropout
        self.use_adapters = use_adapters
        self.adapter_reduction_factor = adapter_reduction_factor
        self.recursion_lora_rank = recursion_lora_rank
        self.teacher_name_or_path = teacher_name_or_path
        self.teacher_revision = teacher_revision
        self.teacher_layer_map = list(teacher_layer_map) if teacher_layer_map is not None else None
        self.conversion_init = conversion_init
        self.embedding_layout = embedding_layout
        self.adapter_layout = adapter_layout
        self.mlm_decoder = mlm_decoder
        self.source_checkpoint = source_checkpoint
        self.source_revision = source_revision
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = mlm_decoder == "tied" if tie_word_embeddings is None else tie_word_embeddings
        self.check_values()
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        # transformers 5 no longer declares the special token ids on the base config (4.x did): every config
        # passes them up, so both versions set them and `warn_if_padding_and_no_attention_mask` finds them.
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=self.tie_word_embeddings,
            **kwargs,
        )

    def check_values(self) -> None:
        """Refuse a value no MiniAlbert can be built from, with a ValueError that names it and what would do."""
        for name in (
            "vocab_size",
            "embedding_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "adapter_reduction_factor",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads}); choose a head count among the divisors of {self.hidden_size}."
            )
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"`hidden_act` must be one of {sorted(ACT2FN)}, got {self.hidden_act!r}.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1), got {value!r}.")
        if self.use_adapters and self.hidden_size // self.adapter_reduction_factor < 1:
            raise ValueError(
                f"`adapter_reduction_factor` ({self.adapter_reduction_factor}) leaves no adapter width at "
                f"`hidden_size` {self.hidden_size}; use a factor of at most {self.hidden_size}."
            )
        rank = self.recursion_lora_rank
        if isinstance(rank, bool) or not isinstance(rank, int):
            raise ValueError(f"`recursion_lora_rank` must be an integer, got {rank!r}.")
        if not 0 <= rank <= self.hidden_size:
            raise ValueError(
                f"`recursion_lora_rank` must be between 0 (off) and `hidden_size` ({self.hidden_size}, full rank), "
                f"got {rank}."
            )
        check_num_recursions(self.num_recursions, self.num_hidden_layers)
        layer_map = self.teacher_layer_map
        if layer_map is not None and (
            len(layer_map) != self.num_hidden_layers
            or not all(isinstance(layer, int) and layer >= 1 for layer in layer_map)
        ):
            raise ValueError(
                f"`teacher_layer_map` must list one 1-based teacher layer per recursion ({self.num_hidden_layers}), "
                f"got {layer_map!r}."
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` must be positive, got {self.layer_norm_eps!r}.")
        for name, allowed in (
            ("embedding_layout", EMBEDDING_LAYOUTS),
            ("adapter_layout", ADAPTER_LAYOUTS),
            ("mlm_decoder", MLM_DECODERS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {', '.join(allowed)}, got {getattr(self, name)!r}.")
        if self.tie_word_embeddings and self.mlm_decoder == "untied":
            raise ValueError(
                '`tie_word_embeddings=True` needs the E-wide decoder of `mlm_decoder="tied"`: the "untied" decoder '
                "is H wide and cannot share the word embeddings. Pass `tie_word_embeddings=False` or "
                '`mlm_decoder="tied"`.'
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"`{name}` must be in [0, {self.vocab_size}) or None, got {value!r}.")


__all__ = ["MiniAlbertConfig"]
