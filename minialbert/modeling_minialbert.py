"""MiniAlbert: a recursive transformer student (Nouriborji et al., EACL 2023).

One transformer layer is applied `config.num_hidden_layers` times over factorised word embeddings. Each
recursion may carry its own bottleneck adapters (the paper) and its own low-rank relaxation of the shared
weights (Bae et al., "Relaxed Recursive Transformers", 2024).

This file is uploaded to the Hugging Face Hub next to the weights and runs there under
`trust_remote_code=True`: it may import only torch, transformers' public API and
`configuration_minialbert`. It supports transformers 4.57 and 5.x: users load it with whatever version they have.
"""

from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F
from transformers import GradientCheckpointingLayer, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple

from .configuration_minialbert import MiniAlbertConfig, check_num_recursions


def is_tracing() -> bool:
    """Whether torch.compile, torch.export or the ONNX exporter is tracing the model: value-dependent shortcuts
    (skip the mask of an unpadded batch, drop padding tokens) would be baked into the graph for every input."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


try:  # transformers 5: initialisers that leave weights loaded from a checkpoint alone
    from transformers import initialization as init
except ImportError:  # transformers 4.x initialises missing weights only, so torch's own initialisers do
    from torch.nn import init

try:  # transformers 5: masks for every attention implementation (SDPA, eager, flash, flex)
    from transformers.masking_utils import create_bidirectional_mask
except ImportError:  # transformers 4.x: eager and SDPA, the two implementations both kernels here accept

    def create_bidirectional_mask(
        config: MiniAlbertConfig, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """A boolean key-padding mask (True = attend), or None when nothing is padded."""
        if attention_mask is None or attention_mask.dim() == 4:
            return attention_mask
        if not is_tracing() and bool(attention_mask.all()):
            return None
        return attention_mask.to(device=inputs_embeds.device, dtype=torch.bool)[:, None, None, :]


class MiniAlbertEmbeddings(nn.Module):
    """Word embeddings of width E, position and token-type embeddings and a LayerNorm, projected to width H.

    `config.embedding_layout == "bert"` (the default): words are projected to H first (when E != H), and
    positions, token types and the LayerNorm live at width H, so a BERT teacher's embedding block carries over
    unchanged and only the word-embedding matrix is factorised. `"albert"`: everything at width E, then the
    projection after the LayerNorm (the published MiniALBERT checkpoints). Either way there is no projection
    where E == H, as in the authors' code.
    """

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.project_last = config.embedding_layout == "albert"
        width = config.embedding_size if self.project_last else config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.projection = (
            nn.Linear(config.embedding_size, config.hidden_size)
            if config.embedding_size != config.hidden_size
            else None
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        seq_length = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = torch.arange(seq_length, device=inputs_embeds.device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)

        embeddings = inputs_embeds
        if self.projection is not None and not self.project_last:
            embeddings = self.projection(embeddings)
        embeddings = embeddings + self.position_embeddings(position_ids) + self.token_type_embeddings(token_type_ids)
        embeddings = self.dropout(self.LayerNorm(embeddings))
        if self.projection is not None and self.project_last:
            embeddings = self.projection(embeddings)
        return embeddings


class LowRankDelta(nn.Module):
    """One recursion's correction to a shared linear layer: `x @ (up @ down).T + bias`.

    Plain parameters rather than `nn.Linear` modules, so PEFT's `target_modules="all-linear"` does not
    wrap the relaxation itself.
    """

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.down = nn.Parameter(torch.empty(rank, in_features))
        self.up = nn.Parameter(torch.empty(out_features, rank))
        self.bias = nn.Parameter(torch.empty(out_features))
        # The shared linear with this delta merged in, for inference (`MiniAlbertEncoder.merge_relaxations`).
        self.register_buffer("merged_weight", None, persistent=False)
        self.register_buffer("merged_bias", None, persistent=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(hidden_states, self.down), self.up, self.bias)

    def merged(self, linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias of `linear` with this delta merged in: kept copies at inference once merged, else
        computed (under autograd, the gradient reaches both)."""
        if self.merged_weight is not None and not self.training:
            return self.merged_weight, self.merged_bias
        return linear.weight + self.up @ self.down, linear.bias + self.bias


class LayerNormDelta(nn.Module):
    """One recursion's additive correction to a shared LayerNorm's scale and shift."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden_size))
        self.bias = nn.Parameter(torch.empty(hidden_size))


class MiniAlbertRelaxation(nn.Module):
    """Everything one recursion changes in the shared layer: `<name>_delta` changes the layer's module `<name>`.

    The suffix keeps PEFT's `target_modules=["query", "ffn", ...]` on the shared layer's linears only.
    """

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        hidden, intermediate, rank = config.hidden_size, config.intermediate_size, config.recursion_lora_rank
        self.query_delta = LowRankDelta(hidden, hidden, rank)
        self.key_delta = LowRankDelta(hidden, hidden, rank)
        self.value_delta = LowRankDelta(hidden, hidden, rank)
        self.dense_delta = LowRankDelta(hidden, hidden, rank)
        self.attention_layer_norm_delta = LayerNormDelta(hidden)
        self.ffn_delta = LowRankDelta(hidden, intermediate, rank)
        self.ffn_output_delta = LowRankDelta(intermediate, hidden, rank)
        self.ffn_layer_norm_delta = LayerNormDelta(hidden)


def merges_relaxations(linears: tuple[nn.Module, ...], deltas: tuple[LowRankDelta, ...]) -> bool:
    """Whether relaxed linears run as merged matrices `weight + up @ down` rather than the shared linear plus the
    low-rank pair: at inference once merged (`MiniAlbertEncoder.merge_relaxations`, which keeps a copy per
    recursion), and under autograd (training: batches of hundreds of tokens), where computing the merge costs less,
    forward and backward, than the pair, whose cost grows with the tokens. Otherwise (inference, often a few tokens)
    the pair. Linears PEFT has wrapped keep the pair."""
    if not all(type(linear) is nn.Linear for linear in linears):
        return False
    return torch.is_grad_enabled() or all(delta.merged_weight is not None and not delta.training for delta in deltas)


def relaxed_linear(linear: nn.Module, hidden_states: torch.Tensor, delta: LowRankDelta | None) -> torch.Tensor:
    if delta is None:
        return linear(hidden_states)
    if merges_relaxations((linear,), (delta,)):
        return F.linear(hidden_states, *delta.merged(linear))
    return linear(hidden_states) + delta(hidden_states)


def relaxed_layer_norm(
    layer_norm: nn.LayerNorm, hidden_states: torch.Tensor, delta: LayerNormDelta | None
) -> torch.Tensor:
    if delta is None:
        return layer_norm(hidden_states)
    return F.layer_norm(
        hidden_states,
        layer_norm.normalized_shape,
        layer_norm.weight + delta.weight,
        layer_norm.bias + delta.bias,
        layer_norm.eps,
    )


class ZeroInitLinear(nn.Linear):
    """A linear layer that `_init_weights` starts at zero (weight and bias)."""


class BottleneckAdapter(nn.Module):
    """The paper's per-recursion adapter: down-projection, activation, up-projection, residual, and a LayerNorm.

    `config.adapter_layout == "branch_norm"` (the default): the LayerNorm sits on the branch rather than after
    the residual, and `up` starts at zero, so a new adapter is an exact identity: adding adapters to a converted
    or trained model does not move its outputs. `"post_norm"`: `LayerNorm(x + up(act(down(x))))`, as in the
    published MiniALBERT checkpoints.
    """

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        bottleneck = config.hidden_size // config.adapter_reduction_factor
        self.post_norm = config.adapter_layout == "post_norm"
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.down = nn.Linear(config.hidden_size, bottleneck)
        self.activation = ACT2FN[config.hidden_act]
        self.up = ZeroInitLinear(bottleneck, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            return self.LayerNorm(hidden_states + self.up(self.activation(self.down(hidden_states))))
        return hidden_states + self.up(self.activation(self.down(self.LayerNorm(hidden_states))))


class MiniAlbertRecursionAdapters(nn.Module):
    """One recursion's adapters, applied to the inputs of its attention and feed-forward sub-blocks."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.before_attention = BottleneckAdapter(config)
        self.before_ffn = BottleneckAdapter(config)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain attention that also returns the probabilities, taken *before* dropout (distillation targets).

    Accepts both mask formats the model produces: boolean (True = attend) and additive float.
    """
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probabilities = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    dropped = F.dropout(probabilities, p=dropout, training=module.training)
    output = torch.matmul(dropped, value).transpose(1, 2).contiguous()
    return output, probabilities


def attention_function(config: MiniAlbertConfig) -> Callable:
    """The configured attention kernel (`config._attn_implementation`), from transformers' registry: kernels
    users register with `AttentionInterface.register` are found too. transformers 5 allows
    `set_attn_implementation` on models whose source calls `ALL_ATTENTION_FUNCTIONS.get_interface(` literally."""
    if hasattr(ALL_ATTENTION_FUNCTIONS, "get_interface"):  # transformers 5
        return ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, eager_attention_forward)
    return ALL_ATTENTION_FUNCTIONS.get(config._attn_implementation, eager_attention_forward)  # transformers 4.x


class PackedTokens:
    """The real (non-padding) tokens of a padded batch, for running the token-wise layers on them alone.

    Linear layers, LayerNorms and adapters act on each token separately, so on a padded batch they can run on
    the `(real_tokens, hidden)` matrix of real tokens only; attention alone needs the `(batch, sequence)` layout
    back. Padding positions of the model's outputs then hold zeros instead of the values of an unread
    computation.
    """

    def __init__(self, attention_mask: torch.Tensor):
        self.batch_size, self.sequence_length = attention_mask.shape
        self.indices = attention_mask.flatten().nonzero().squeeze(1)
        self.key_mask = attention_mask.bool()[:, None, None, :]

    def pack(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states.reshape(self.batch_size * self.sequence_length, -1).index_select(0, self.indices)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        padded = packed.new_zeros(self.batch_size * self.sequence_length, packed.shape[-1])
        return padded.index_copy(0, self.indices, packed).view(self.batch_size, self.sequence_length, -1)


class MiniAlbertAttention(nn.Module):
    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def project_qkv(self, hidden_states: torch.Tensor, relaxation: MiniAlbertRelaxation | None) -> torch.Tensor:
        """Query, key and value side by side, `(..., 3 * hidden)`, for one unpack and one split: one matrix
        multiply where the three are plain linear layers (with their relaxations merged in, `merges_relaxations`),
        else one each (PEFT wraps them, or inference adds the low-rank deltas)."""
        projections = (self.query, self.key, self.value)
        if relaxation is None and all(type(projection) is nn.Linear for projection in projections):
            weight = torch.cat([projection.weight for projection in projections])
            bias = torch.cat([projection.bias for projection in projections])
            return F.linear(hidden_states, weight, bias)
        if relaxation is not None:
            deltas = tuple(getattr(relaxation, f"{name}_delta") for name in ("query", "key", "value"))
            if merges_relaxations(projections, deltas):
                merged = [delta.merged(projection) for projection, delta in zip(projections, deltas, strict=True)]
                return F.linear(hidden_states, *(torch.cat(part) for part in zip(*merged, strict=True)))
        return torch.cat(
            [
                relaxed_linear(getattr(self, name), hidden_states, getattr(relaxation, f"{name}_delta", None))
                for name in ("query", "key", "value")
            ],
            dim=-1,
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        relaxation: MiniAlbertRelaxation | None = None,
        output_attentions: bool = False,
        packed: PackedTokens | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        qkv = self.project_qkv(hidden_states, relaxation)
        if packed is not None:
            qkv, attention_mask = packed.unpack(qkv), packed.key_mask
        query, key, value = qkv.view(*qkv.shape[:-1], 3, -1, self.head_dim).permute(2, 0, 3, 1, 4)
        input_shape = qkv.shape[:-1]

        # Attention maps need the eager kernel; every other call takes the configured one (SDPA by default).
        attention_interface = eager_attention_forward if output_attentions else attention_function(self.config)
        attention_output, attention_probabilities = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.config.attention_probs_dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attention_output = attention_output.reshape(*input_shape, -1)
        if packed is not None:
            attention_output = packed.pack(attention_output)
        attention_output = relaxed_linear(self.dense, attention_output, getattr(relaxation, "dense_delta", None))
        return attention_output, attention_probabilities


class MiniAlbertLayer(GradientCheckpointingLayer):
    """The one transformer layer every recursion applies (post-LayerNorm, as in BERT)."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.attention = MiniAlbertAttention(config)
        self.attention_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.ffn_output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        adapters: MiniAlbertRecursionAdapters | None = None,
        relaxation: MiniAlbertRelaxation | None = None,
        output_attentions: bool = False,
        packed: PackedTokens | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`hidden_states` is `(batch, sequence, hidden)`, or `(real_tokens, hidden)` given `packed`."""
        if adapters is not None:
            hidden_states = adapters.before_attention(hidden_states)
        attention_output, attention_probabilities = self.attention(
            hidden_states, attention_mask, relaxation, output_attentions, packed, **kwargs
        )
        hidden_states = relaxed_layer_norm(
            self.attention_layer_norm,
            hidden_states + self.dropout(attention_output),
            getattr(relaxation, "attention_layer_norm_delta", None),
        )

        if adapters is not None:
            hidden_states = adapters.before_ffn(hidden_states)
        ffn_output = self.activation(relaxed_linear(self.ffn, hidden_states, getattr(relaxation, "ffn_delta", None)))
        ffn_output = relaxed_linear(self.ffn_output, ffn_output, getattr(relaxation, "ffn_output_delta", None))
        hidden_states = relaxed_layer_norm(
            self.ffn_layer_norm,
            hidden_states + self.dropout(ffn_output),
            getattr(relaxation, "ffn_layer_norm_delta", None),
        )
        return hidden_states, attention_probabilities


class MiniAlbertEncoder(nn.Module):
    """Applies the shared layer once per recursion, each time with that recursion's adapters and relaxation.

    `config.num_recursions` (elastic depth) runs the first recursions only: the same computation as a model built
    with that many recursions and the same weights, while the weights of the later ones stay loaded and saved.
    """

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.config = config
        check_num_recursions(config.num_recursions, config.num_hidden_layers)
        self.layer = MiniAlbertLayer(config)
        self.adapters = (
            nn.ModuleList(MiniAlbertRecursionAdapters(config) for _ in range(config.num_hidden_layers))
            if config.use_adapters
            else None
        )
        self.relaxations = (
            nn.ModuleList(MiniAlbertRelaxation(config) for _ in range(config.num_hidden_layers))
            if config.recursion_lora_rank > 0
            else None
        )

    # Each linear of the shared layer a relaxation changes, by its path in `MiniAlbertLayer` (the delta is named for
    # the last part: `query_delta`, ..., `ffn_output_delta`).
    RELAXED_LINEARS = ("attention.query", "attention.key", "attention.value", "attention.dense", "ffn", "ffn_output")

    def relaxed_linears(self) -> Iterator[tuple[str, nn.Module, LowRankDelta]]:
        """Each (path, shared linear, one recursion's delta on it), recursion by recursion."""
        for relaxation in self.relaxations or ():
            for path in self.RELAXED_LINEARS:
                yield path, self.layer.get_submodule(path), relaxation.get_submodule(f"{path.split('.')[-1]}_delta")

    @property
    def relaxations_merged(self) -> bool:
        return self.relaxations is not None and self.relaxations[0].query_delta.merged_weight is not None

    @torch.no_grad()
    def merge_relaxations(self) -> None:
        """Keep, for each recursion, its linears with its relaxation merged in (`weight + up @ down`, as PEFT merges
        LoRA): inference then runs one matrix multiply per linear instead of the shared one plus the low-rank pair,
        at the memory of one full layer's linears per recursion. Outputs are unchanged up to rounding. Training
        ignores the copies (it merges afresh, under autograd); call `unmerge_relaxations` before changing the
        weights otherwise, e.g. with `load_state_dict`."""
        if self.relaxations is None:
            raise ValueError("This MiniAlbert has no relaxations to merge (recursion_lora_rank is 0).")
        for path, linear, _ in self.relaxed_linears():
            if type(linear) is not nn.Linear:
                raise ValueError(
                    f"The shared layer's {path} is wrapped ({type(linear).__name__}, e.g. by PEFT): merge or unload "
                    "those adapters first (merge_and_unload), then merge the relaxations."
                )
        for _, linear, delta in self.relaxed_linears():
            delta.merged_weight, delta.merged_bias = linear.weight + delta.up @ delta.down, linear.bias + delta.bias

    def unmerge_relaxations(self) -> None:
        """Drop the merged copies of `merge_relaxations`: back to the shared linear plus the low-rank pair."""
        for _, _, delta in self.relaxed_linears():
            delta.merged_weight = delta.merged_bias = None

    @property
    def depth(self) -> int:
        """How many recursions a forward pass runs (checked again here: the config may change after loading)."""
        check_num_recursions(self.config.num_recursions, self.config.num_hidden_layers)
        return self.config.num_recursions or self.config.num_hidden_layers

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        packed: PackedTokens | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        if packed is not None:
            hidden_states = packed.pack(hidden_states)
        for recursion in range(self.depth):
            hidden_states, attention_probabilities = self.layer(
                hidden_states,
                attention_mask,
                self.adapters[recursion] if self.adapters is not None else None,
                self.relaxations[recursion] if self.relaxations is not None else None,
                output_attentions,
                packed,
                **kwargs,
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states if packed is None else packed.unpack(hidden_states),)
            if output_attentions:
                all_attentions += (attention_probabilities,)
        if packed is not None:
            hidden_states = packed.unpack(hidden_states) if not output_hidden_states else all_hidden_states[-1]
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class MiniAlbertPreTrainedModel(PreTrainedModel):
    config_class = MiniAlbertConfig
    base_model_prefix = "minialbert"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["MiniAlbertEmbeddings", "MiniAlbertLayer"]

    def merge_relaxations(self) -> None:
        """Run each recursion's relaxed linears as merged weights of their own at inference (faster on batches of
        more than a few hundred tokens, at the memory of one layer's linears per recursion): see
        `MiniAlbertEncoder.merge_relaxations`. `minialbert export` merges by default."""
        self.base_model.encoder.merge_relaxations()

    def unmerge_relaxations(self) -> None:
        """Back to the shared linears plus each recursion's low-rank pairs (`merge_relaxations` undone)."""
        self.base_model.encoder.unmerge_relaxations()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, ZeroInitLinear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, LowRankDelta):
            # LoRA-style: a random `down` and a zero `up`, so every recursion starts as the shared layer.
            init.normal_(module.down, mean=0.0, std=std)
            init.zeros_(module.up)
            init.zeros_(module.bias)
        elif isinstance(module, LayerNormDelta):
            init.zeros_(module.weight)
            init.zeros_(module.bias)


class MiniAlbertModel(MiniAlbertPreTrainedModel):
    """The bare MiniAlbert encoder; `last_hidden_state[:, 0]` (the CLS token) is what the heads classify."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.embeddings = MiniAlbertEmbeddings(config)
        self.encoder = MiniAlbertEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        inputs_embeds (`torch.Tensor` of shape `(batch_size, sequence_length, embedding_size)`, *optional*):
            Word embeddings of width `config.embedding_size`, used instead of looking up `input_ids`.
        output_attentions (`bool`, *optional*):
            Return one attention-probability map per recursion, taken before attention dropout. These
            recursions run the eager kernel; all others keep the configured one.
        output_hidden_states (`bool`, *optional*):
            Return the embedding output followed by the hidden state after each recursion.
        return_dict (`bool`, *optional*):
            Return a plain tuple when `False`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if input_ids is not None:
            self.warn_if_padding_and_no_attention_mask(input_ids, attention_mask)

        embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        key_padding_mask = attention_mask is not None and attention_mask.dim() == 2
        if not output_attentions and self.config._attn_implementation in ("sdpa", "eager") and key_padding_mask:
            if is_tracing():
                # One graph for every input: an additive key mask broadcast over heads and queries. A boolean
                # or per-query mask exports as selects over every attention score (a quarter of ONNX's time).
                dtype = embedding_output.dtype
                mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
                return self.encoder(embedding_output, mask, output_attentions, output_hidden_states, **kwargs)
            if not bool(attention_mask.all()):
                # A padded batch: the token-wise layers run on its real tokens only.
                packed = PackedTokens(attention_mask.to(embedding_output.device))
                return self.encoder(
                    embedding_output, packed.key_mask, output_attentions, output_hidden_states, packed, **kwargs
                )
        if output_attentions and self.config._attn_implementation != "eager" and attention_mask is not None:
            # The eager kernel takes a boolean key-padding mask directly.
            mask = attention_mask.bool()[:, None, None, :] if key_padding_mask else attention_mask
        else:
            mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
            )
        return self.encoder(embedding_output, mask, output_attentions, output_hidden_states, **kwargs)


class MiniAlbertMLMHead(nn.Module):
    """BERT's prediction transform at width H, then the decoder. `config.mlm_decoder == "tied"` (the default):
    a projection down to E and a decoder tied to the E-wide word embeddings (ALBERT style), so no H-by-vocabulary
    matrix is stored. `"untied"`: an H-wide decoder of its own (the published MiniALBERT checkpoints)."""

    def __init__(self, config: MiniAlbertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        tied = config.mlm_decoder == "tied"
        self.projection = (
            nn.Linear(config.hidden_size, config.embedding_size, bias=False)
            if tied and config.embedding_size != config.hidden_size
            else None
        )
        self.decoder = nn.Linear(config.embedding_size if tied else config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.LayerNorm(self.activation(self.dense(hidden_states)))
        if self.projection is not None:
            hidden_states = self.projection(hidden_states)
        return self.decoder(hidden_states)


class MiniAlbertForMaskedLM(MiniAlbertPreTrainedModel):
    _tied_weights_keys = {"predictions.decoder.weight": "minialbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.minialbert = MiniAlbertModel(config)
        self.predictions = MiniAlbertMLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.predictions.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        prediction_mask: torch.BoolTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Token ids to predict; positions set to -100 are ignored by the loss.
        prediction_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Run the prediction head only where `True` (typically `labels != -100`): the vocabulary projection is
            most of an MLM head's cost, and training needs it at the masked 15% only. `logits` then has shape
            `(num_selected, vocab_size)`, in row-major order of the selected positions.
        """
        outputs = self.minialbert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if prediction_mask is not None:
            hidden_states = hidden_states[prediction_mask]
            labels = labels[prediction_mask] if labels is not None else None
        logits = self.predictions(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def classifier_dropout(config: MiniAlbertConfig) -> nn.Dropout:
    return nn.Dropout(
        config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    )


class MiniAlbertForSequenceClassification(MiniAlbertPreTrainedModel):
    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.minialbert = MiniAlbertModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.Tensor`, *optional*):
            Class ids of shape `(batch_size,)` (single-label), floats of shape `(batch_size,)` when
            `num_labels == 1` (regression, MSE), or multi-hot floats of shape `(batch_size, num_labels)`
            (multi-label, BCE). The kind is inferred once like BERT's and stored in `config.problem_type`.
        """
        outputs = self.minialbert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        # The paper classifies the CLS state directly, without BERT's pooler.
        logits = self.classifier(self.dropout(outputs.last_hidden_state[:, 0]))

        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MiniAlbertForTokenClassification(MiniAlbertPreTrainedModel):
    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.minialbert = MiniAlbertModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Label id per token; -100 marks tokens the loss ignores (padding, continuation word pieces).
        """
        outputs = self.minialbert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = self.loss_function(logits, labels, self.config, **kwargs) if labels is not None else None
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MiniAlbertForQuestionAnswering(MiniAlbertPreTrainedModel):
    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.minialbert = MiniAlbertModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        r"""
        start_positions, end_positions (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Token index of the answer span's start and end. Positions outside the sequence are clamped to its
            length and ignored by the loss, as in BERT.
        """
        outputs = self.minialbert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions, **kwargs)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class MiniAlbertForMultipleChoice(MiniAlbertPreTrainedModel):
    def __init__(self, config: MiniAlbertConfig):
        super().__init__(config)
        self.minialbert = MiniAlbertModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultipleChoiceModelOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, num_choices, sequence_length)`):
            One row of tokens per choice; the other per-token inputs have the same shape.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Index of the correct choice.
        """
        num_choices = (input_ids if input_ids is not None else inputs_embeds).shape[1]

        def flatten(tensor: torch.Tensor | None, trailing_dims: int = 1) -> torch.Tensor | None:
            return None if tensor is None else tensor.reshape(-1, *tensor.shape[-trailing_dims:])

        outputs = self.minialbert(
            flatten(input_ids),
            attention_mask=flatten(attention_mask),
            token_type_ids=flatten(token_type_ids),
            position_ids=flatten(position_ids),
            inputs_embeds=flatten(inputs_embeds, trailing_dims=2),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state[:, 0])).view(-1, num_choices)
        loss = None
        if labels is not None:
            # The Trainer passes `num_items_in_batch` under gradient accumulation: the loss is then a sum over it.
            num_items_in_batch = kwargs.get("num_items_in_batch")
            loss = F.cross_entropy(logits, labels, reduction="mean" if num_items_in_batch is None else "sum")
            if num_items_in_batch is not None:
                loss = loss / num_items_in_batch
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "MiniAlbertPreTrainedModel",
    "MiniAlbertModel",
    "MiniAlbertForMaskedLM",
    "MiniAlbertForSequenceClassification",
    "MiniAlbertForTokenClassification",
    "MiniAlbertForQuestionAnswering",
    "MiniAlbertForMultipleChoice",
]
