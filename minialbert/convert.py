"""Initialise a MiniAlbert student from a BERT teacher's own weights and, by default, its activations.

The teacher's word-embedding matrix is factorised by truncated SVD into the student's E-wide embeddings
and E-to-H projection; positions, token types and the embedding LayerNorm carry over unchanged. The shared
layer starts from one teacher layer or a merge of several (`init`), each recursion's relaxation (when
`recursion_lora_rank` > 0) starts from the truncated SVD of its own teacher layer minus the shared layer,
and the teacher's masked-LM transform and output bias carry over when the teacher has them.

With calibration text (`calibration_samples` > 0, the default) the teacher runs once over it, and every fit is
weighted by what the teacher actually computes: the embedding factorisation by how often each token occurs, the
relaxations by a truncated SVD whitened by their inputs' covariance, and (`init="fitted"`) the shared layer's linear
maps by least squares against every mapped teacher layer's outputs on its own inputs. `calibration_samples=0`
converts from the weights alone.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, BertModel, PreTrainedTokenizerBase
from transformers.models.bert.modeling_bert import BertLayer

from .configuration_minialbert import MiniAlbertConfig
from .corpora import SourceNotInstalled
from .errors import BadInputError, as_bad_input
from .modeling_minialbert import LowRankDelta, MiniAlbertForMaskedLM, MiniAlbertLayer, MiniAlbertRelaxation
from .teacher import Teacher, check_layer_map, layer_map, load_teacher, spread_layer_map

logger = logging.getLogger(__name__)

# Measured on the bundled teacher by benchmarks/conversion_fidelity.py (see docs/conversion.md).
DEFAULT_INIT = "average"
DEFAULT_CALIBRATION_SAMPLES = 256
CALIBRATION_MAX_LENGTH = 128
# Directions of a Gram matrix the calibration text never reaches keep the weight-only value: a ridge of this share
# of the mean diagonal pulls the least-squares fits towards it instead of towards zero.
CALIBRATION_RIDGE = 1e-6
INIT_STRATEGIES = ("stepwise", "average", "fitted", "lower", "layer:K")

# Each parameter-holding module of MiniAlbertLayer and the BertLayer module it is initialised from.
LAYER_MODULES = {
    "attention.query": "attention.self.query",
    "attention.key": "attention.self.key",
    "attention.value": "attention.self.value",
    "attention.dense": "attention.output.dense",
    "attention_layer_norm": "attention.output.LayerNorm",
    "ffn": "intermediate.dense",
    "ffn_output": "output.dense",
    "ffn_layer_norm": "output.LayerNorm",
}
# Key and value read the query's input: calibration sums one Gram matrix for the three.
SAME_INPUT_AS = {"attention.self.key": "attention.self.query", "attention.self.value": "attention.self.query"}


# What each student shape defaults to: the relaxation's rank as a share of the hidden size, and the layer map.
# "relaxed" is the best student within 40% of the teacher's parameters measured by benchmarks/front.py; "paper" is
# Nouriborji et al.'s (no relaxation, evenly spaced layers).
STUDENT_SHAPES = {
    "relaxed": {"rank_share": 0.25, "layer_map": spread_layer_map},
    "paper": {"rank_share": 0.0, "layer_map": layer_map},
}


def default_rank(hidden_size: int, student_shape: str) -> int:
    """The relaxation rank a student shape gives a teacher of `hidden_size`: a quarter of it for "relaxed" (96 for
    all-MiniLM-L6-v2's 384, 192 for BERT-base's 768, 8 for a 32-wide test BERT), 0 (none) for "paper"."""
    return int(hidden_size * STUDENT_SHAPES[student_shape]["rank_share"])


@dataclass
class ConversionArguments:
    """Options of `minialbert convert` and `convert_bert_to_minialbert`."""

    embedding_size: int = field(
        default=128, metadata={"help": "Width E of the student's word embeddings (at most the teacher's hidden size)."}
    )
    num_recursions: int | None = field(
        default=None,
        metadata={"help": "Times the shared layer is applied (default: half the teacher's layers, rounded up)."},
    )
    init: str = field(
        default=DEFAULT_INIT,
        metadata={
            "help": "Shared-layer initialisation: 'stepwise' (the teacher layer the first recursion stands for in the "
            "evenly spaced layer map), 'average' (mean of the mapped teacher layers), 'fitted' (least-squares fit to "
            "the mapped teacher layers' outputs on the calibration text), 'lower' (teacher layer 1), or 'layer:K' "
            "(teacher layer K, 1-based)."
        },
    )
    student_shape: str = field(
        default="relaxed",
        metadata={
            "help": "The defaults of --recursion_lora_rank and --teacher_layer_map: 'relaxed' (rank a quarter of the "
            "hidden size; the teacher's first and last layers and the rest evenly between: the best student of "
            "benchmarks/front.py) or 'paper' (no relaxation, evenly spaced layers, as Nouriborji et al.).",
            "choices": tuple(STUDENT_SHAPES),
        },
    )
    use_adapters: bool = field(
        default=True, metadata={"help": "Give each recursion its own bottleneck adapters (they start as identities)."}
    )
    adapter_reduction_factor: int = field(default=16, metadata={"help": "Adapter width = hidden size / this factor."})
    recursion_lora_rank: int | None = field(
        default=None,
        metadata={
            "help": "Rank of each recursion's relaxation, initialised from the SVD of its teacher layer minus the "
            "shared layer (0 = off; the hidden size = exact; default: --student_shape's, a quarter of the hidden "
            "size for 'relaxed')."
        },
    )
    teacher_layer_map: list[int] | None = field(
        default=None,
        metadata={
            "help": "The teacher layer (1-based) each recursion stands for, one per recursion (default: "
            "--student_shape's: first, last and evenly between for 'relaxed', evenly spaced for 'paper')."
        },
    )
    calibration_samples: int = field(
        default=DEFAULT_CALIBRATION_SAMPLES,
        metadata={
            "help": "Texts the teacher runs on to weight the conversion by its activations (token frequencies, "
            "least-squares shared layer, whitened relaxations); 0 = from the weights alone. Read from "
            "--calibration_file, else the bundled BBC News training articles."
        },
    )
    calibration_file: str | None = field(
        default=None, metadata={"help": "Text file, one text per line, to calibrate on (text like your own)."}
    )
    revision: str | None = field(default=None, metadata={"help": "Teacher revision (branch, tag, commit) on the Hub."})
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer to save with the student (default: the teacher's own)."}
    )

    def __post_init__(self):
        if self.student_shape not in STUDENT_SHAPES:
            raise BadInputError(
                f"student_shape must be one of {list(STUDENT_SHAPES)}, got {self.student_shape!r}; pass 'relaxed' "
                "(the default) or 'paper'."
            )


def parse_init(init: str, num_teacher_layers: int, teacher_layers: list[int]) -> list[int]:
    """The 1-based teacher layers whose mean (or, for `fitted`, least-squares fit) becomes the shared layer."""
    if init == "stepwise":
        return teacher_layers[:1]
    if init in ("average", "fitted"):
        return teacher_layers
    if init == "lower":
        return [1]
    if init.startswith("layer:"):
        index = init.removeprefix("layer:")
        if index.isdigit() and 1 <= int(index) <= num_teacher_layers:
            return [int(index)]
    raise BadInputError(
        f"Unknown init {init!r}: use one of {', '.join(INIT_STRATEGIES)} with K between 1 and {num_teacher_layers}."
    )


def student_config(teacher: Teacher, arguments: ConversionArguments) -> MiniAlbertConfig:
    """The student's config: the teacher's widths, the conversion options and the provenance fields."""
    bert = teacher.bert.config
    num_recursions = arguments.num_recursions
    if num_recursions is None:
        num_recursions = (bert.num_hidden_layers + 1) // 2
    elif num_recursions < 1:
        raise BadInputError(
            f"num_recursions must be at least 1, got {num_recursions}; the shared layer runs that often."
        )
    if arguments.embedding_size > bert.hidden_size:
        raise BadInputError(
            f"embedding_size ({arguments.embedding_size}) exceeds the teacher's hidden size ({bert.hidden_size}); "
            f"factorised embeddings must be at most {bert.hidden_size} wide."
        )
    shape = STUDENT_SHAPES[arguments.student_shape]
    teacher_layers = arguments.teacher_layer_map or shape["layer_map"](bert.num_hidden_layers, num_recursions)
    check_layer_map(teacher_layers, bert.num_hidden_layers, num_recursions, "teacher_layer_map")
    rank = arguments.recursion_lora_rank
    if rank is None:
        rank = default_rank(bert.hidden_size, arguments.student_shape)
    parse_init(arguments.init, bert.num_hidden_layers, teacher_layers)
    with as_bad_input():
        return MiniAlbertConfig(
            vocab_size=bert.vocab_size,
            embedding_size=arguments.embedding_size,
            hidden_size=bert.hidden_size,
            num_hidden_layers=num_recursions,
            num_attention_heads=bert.num_attention_heads,
            intermediate_size=bert.intermediate_size,
            hidden_act=bert.hidden_act,
            hidden_dropout_prob=bert.hidden_dropout_prob,
            attention_probs_dropout_prob=bert.attention_probs_dropout_prob,
            max_position_embeddings=bert.max_position_embeddings,
            type_vocab_size=bert.type_vocab_size,
            initializer_range=bert.initializer_range,
            layer_norm_eps=bert.layer_norm_eps,
            pad_token_id=bert.pad_token_id if bert.pad_token_id is not None else 0,
            use_adapters=arguments.use_adapters,
            adapter_reduction_factor=arguments.adapter_reduction_factor,
            recursion_lora_rank=rank,
            teacher_name_or_path=teacher.name_or_path,
            teacher_revision=teacher.revision,
            teacher_layer_map=teacher_layers,
            conversion_init=arguments.init,
        )


def factorise_embeddings(
    word_embeddings: torch.Tensor, rank: int, token_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best rank-`rank` affine fit `W ≈ A @ B + mean` (truncated SVD of the centred matrix).

    Returns the E-wide embeddings A (vocab x E), the projection weight B.T (H x E) and its bias (the mean row).
    The mean shifts every vocabulary logit of the tied decoder by the same amount, so it costs the MLM head
    nothing while making the embedding fit better than a plain SVD of the same rank. `token_weights` (one per
    row, e.g. token counts) make it the best fit for text: the subspace minimises the weighted error, so frequent
    tokens are reproduced most closely, and every row, rare ones included, is then projected onto it.
    """
    matrix = word_embeddings.double()
    weights = torch.ones(len(matrix), dtype=matrix.dtype) if token_weights is None else token_weights.double()
    mean = weights @ matrix / weights.sum()
    centred = matrix - mean
    basis = torch.linalg.svd(weights.sqrt()[:, None] * centred, full_matrices=False).Vh[:rank]
    return (centred @ basis.T).float(), basis.T.float(), mean.float()


def augmented(linear: nn.Linear) -> torch.Tensor:
    """`[weight | bias]`: the linear map on inputs with a ones column appended, as a Gram matrix sees them."""
    return torch.cat([linear.weight, linear.bias[:, None]], dim=1).double()


def ridge(gram: torch.Tensor) -> torch.Tensor:
    return CALIBRATION_RIDGE * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)


def merge_linears(linears: list[nn.Linear], grams: list[torch.Tensor] | None) -> torch.Tensor:
    """The one `[weight | bias]` that stands for several teacher linears.

    Without calibration, their mean. With each one's input Gram matrix `G_k = Σ x̃ x̃ᵀ` (x̃ = [x, 1] over its
    calibration tokens), the least-squares fit to all their outputs on their own inputs,
    `argmin_W Σ_k ||W x̃ − W_k x̃||²` = `(Σ_k W_k G_k)(Σ_k G_k)⁻¹`, with a small ridge towards the mean for
    directions no input reaches; one linear merges into itself.
    """
    weights = [augmented(linear) for linear in linears]
    mean = torch.stack(weights).mean(dim=0)
    if grams is None:
        return mean
    total = sum(grams)
    regulariser = ridge(total)
    right = sum(weight @ gram for weight, gram in zip(weights, grams, strict=True)) + mean @ regulariser
    # W (ΣG + λI) = Σ W_k G_k + λ W̄; the matrices are symmetric, so solve the transposed system.
    return torch.linalg.solve(total + regulariser, right.T).T


def low_rank_delta(
    delta: LowRankDelta, target: nn.Linear, shared: nn.Linear, gram: torch.Tensor | None = None
) -> None:
    """Set one recursion's delta to the best rank-r fit of (its teacher linear − the shared linear).

    Without calibration, the truncated SVD of the weight difference. With the input Gram matrix, the fit that
    minimises the error of the outputs on the teacher layer's own inputs: the SVD of the difference whitened by
    the input covariance (`Σ = L Lᵀ`, SVD of `ΔW L`, then back through `L⁻¹`), and a bias that absorbs the
    truncation's error at the input mean. At full rank either is exact.
    """
    rank = delta.down.shape[0]
    difference = (target.weight - shared.weight).double()
    bias = (target.bias - shared.bias).double()
    if gram is None:
        u, s, vh = torch.linalg.svd(difference, full_matrices=False)
        kept = min(rank, s.numel())
        up, down = u[:, :kept] * s[:kept], vh[:kept]
    else:
        count = gram[-1, -1]
        mean = gram[:-1, -1] / count
        covariance = gram[:-1, :-1] / count - torch.outer(mean, mean)
        # Σ = L Lᵀ with L = Q √Λ; eigenvalues are floored at the ridge, as text leaves some directions unexplored.
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        scales = eigenvalues.clamp_min(CALIBRATION_RIDGE * eigenvalues.clamp_min(0).mean()).sqrt()
        u, s, vh = torch.linalg.svd(difference @ (eigenvectors * scales), full_matrices=False)
        kept = min(rank, s.numel())
        up = u[:, :kept] * s[:kept]
        down = (vh[:kept] / scales) @ eigenvectors.T
        bias = bias + (difference - up @ down) @ mean
    delta.up.zero_()
    delta.down.zero_()
    delta.up[:, :kept] = up.float()
    delta.down[:kept] = down.float()
    delta.bias.copy_(bias.float())


@dataclass
class Calibration:
    """What the teacher computes on calibration text: each token's count, and for every linear module of the
    mapped teacher layers the Gram matrix of its inputs (with a ones column) over the real tokens."""

    token_counts: torch.Tensor
    grams: dict[tuple[BertLayer, str], torch.Tensor]

    def gram(self, layer: BertLayer, module_name: str) -> torch.Tensor:
        return self.grams[(layer, SAME_INPUT_AS.get(module_name, module_name))]


def calibration_batches(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int = 16
) -> list[dict[str, torch.Tensor]]:
    """Padded batches of `texts` to calibrate on, refused when there is no text."""
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise BadInputError("The calibration text is empty; pass texts like your own, or calibration_samples=0.")
    return [
        dict(tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                       max_length=CALIBRATION_MAX_LENGTH, return_tensors="pt"))
        for start in range(0, len(texts), batch_size)
    ]  # fmt: skip


def check_calibration(batches: list[dict[str, torch.Tensor]], bert: BertModel) -> None:
    """Each least-squares fit needs more tokens than its linear has inputs (the feed-forward output's)."""
    tokens = sum(int(batch["attention_mask"].sum()) for batch in batches)
    needed = 2 * (bert.config.intermediate_size + 1)
    if tokens < needed:
        raise BadInputError(
            f"The calibration text has {tokens} tokens; fitting the shared layer to the teacher needs at least "
            f"{needed} (twice the feed-forward width + 1). Pass more text (calibration_samples, calibration_file), "
            "or calibration_samples=0 to convert from the weights alone."
        )


@torch.no_grad()
def calibrate(bert: BertModel, batches: list[dict[str, torch.Tensor]], layers: list[int]) -> Calibration:
    """Count the tokens of `batches` and, for the teacher `layers` (1-based) that a fit needs, sum the Gram matrices
    of their linear modules' inputs over one teacher pass (none without such layers)."""
    if layers:
        check_calibration(batches, bert)
    input_readers = [
        name for name in LAYER_MODULES.values() if not name.endswith("LayerNorm") and name not in SAME_INPUT_AS
    ]
    grams: dict[tuple[BertLayer, str], torch.Tensor] = {}
    real_tokens: torch.Tensor | None = None

    def accumulate(key: tuple[BertLayer, str]):
        def hook(module, inputs):
            tokens = inputs[0][real_tokens]
            tokens = torch.cat([tokens, tokens.new_ones(len(tokens), 1)], dim=1)
            # One batch's sum is exact enough in float32 (and fast); the running sum over batches is float64.
            grams[key] = grams.get(key, 0) + (tokens.T @ tokens).double()

        return hook

    handles = [
        bert.encoder.layer[k - 1]
        .get_submodule(name)
        .register_forward_pre_hook(accumulate((bert.encoder.layer[k - 1], name)))
        for k in sorted(set(layers))
        for name in input_readers
    ]
    token_counts = torch.zeros(bert.config.vocab_size)
    try:
        for batch in batches:
            real_tokens = batch["attention_mask"].bool()
            token_counts += torch.bincount(batch["input_ids"][real_tokens], minlength=len(token_counts))
            if handles:
                bert(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return Calibration(token_counts, grams)


@torch.no_grad()
def initialise_shared_layer(layer: MiniAlbertLayer, sources: list[BertLayer], fit: Calibration | None = None) -> None:
    """The mean of the `sources`' parameters, or with `fit`, their linear maps fitted by least squares."""
    for student_name, teacher_name in LAYER_MODULES.items():
        student_module = layer.get_submodule(student_name)
        teacher_modules = [source.get_submodule(teacher_name) for source in sources]
        if isinstance(student_module, nn.Linear):
            grams = None if fit is None else [fit.gram(source, teacher_name) for source in sources]
            merged = merge_linears(teacher_modules, grams)
            student_module.weight.copy_(merged[:, :-1])
            student_module.bias.copy_(merged[:, -1])
            continue
        for parameter_name, parameter in student_module.named_parameters():
            values = [module.get_parameter(parameter_name) for module in teacher_modules]
            parameter.copy_(torch.stack(values).mean(dim=0))


@torch.no_grad()
def initialise_relaxation(
    relaxation: MiniAlbertRelaxation,
    shared: MiniAlbertLayer,
    target: BertLayer,
    calibration: Calibration | None = None,
) -> None:
    for student_name, teacher_name in LAYER_MODULES.items():
        delta = relaxation.get_submodule(student_name.split(".")[-1] + "_delta")
        shared_module, target_module = shared.get_submodule(student_name), target.get_submodule(teacher_name)
        if isinstance(delta, LowRankDelta):
            gram = None if calibration is None else calibration.gram(target, teacher_name)
            low_rank_delta(delta, target_module, shared_module, gram)
        else:
            delta.weight.copy_(target_module.weight - shared_module.weight)
            delta.bias.copy_(target_module.bias - shared_module.bias)


def default_calibration_texts(count: int) -> list[str]:
    """The first `count` BBC News training articles (never the validation or test articles the held-out sets use)."""
    from .corpora import bbc_news_splits

    return bbc_news_splits()["train"]["text"][:count]


def read_calibration_file(path: str | os.PathLike) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(
            f"Cannot read the calibration file {str(path)!r}: {error}; pass a UTF-8 text file."
        ) from error


def calibration_inputs(
    teacher: Teacher,
    arguments: ConversionArguments,
    texts: list[str] | None,
    tokenizer: PreTrainedTokenizerBase | None,
) -> list[dict[str, torch.Tensor]] | None:
    """The tokenised calibration text: `texts`, else `arguments.calibration_file`, else the bundled default; None
    (convert from the weights alone, with a warning) when the default is asked for and not installed."""
    if texts is None:
        if arguments.calibration_file:
            texts = read_calibration_file(arguments.calibration_file)
        else:
            try:
                texts = default_calibration_texts(arguments.calibration_samples)
            except SourceNotInstalled as error:
                if arguments.init == "fitted":
                    raise BadInputError(
                        f"init 'fitted' needs calibration text: {error} Or pass --calibration_file."
                    ) from error
                logger.warning(
                    "%s Converting from the teacher's weights alone; pass --calibration_file with text like yours "
                    "to calibrate on the teacher's activations.",
                    error,
                )
                return None
    if tokenizer is None:
        source = arguments.tokenizer or teacher.name_or_path
        if source is None:
            raise BadInputError(
                "Calibrating the conversion needs the teacher's tokenizer: pass tokenizer=..., or "
                "calibration_samples=0 to convert from the weights alone."
            )
        tokenizer = AutoTokenizer.from_pretrained(source, revision=arguments.revision)
    return calibration_batches(tokenizer, texts[: arguments.calibration_samples])


@torch.no_grad()
def convert_bert_to_minialbert(
    teacher: str | os.PathLike | nn.Module | Teacher,
    arguments: ConversionArguments | None = None,
    calibration_texts: list[str] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    **options,
) -> MiniAlbertForMaskedLM:
    """Build a `MiniAlbertForMaskedLM` initialised from a BERT teacher.

    Args:
        teacher: a BERT checkpoint folder, a Hub id, or a loaded BERT model (`BertModel`, `BertForMaskedLM`,
            `BertForPreTraining` or a BERT task model), or a `Teacher` from `load_teacher`.
        arguments: conversion options; alternatively pass them as keywords (`embedding_size=128`, ...), see
            `ConversionArguments`.
        calibration_texts: text the teacher runs on to weight the conversion by its activations (the first
            `calibration_samples` are used; default: `calibration_file`, else the bundled BBC News training
            articles). Ignored with `calibration_samples=0`.
        tokenizer: the teacher's tokenizer, for the calibration text (default: loaded from the teacher).

    Example:

    ```python
    >>> from minialbert import convert_bert_to_minialbert
    >>> student = convert_bert_to_minialbert("google-bert/bert-base-uncased", embedding_size=128, num_recursions=6)
    ```
    """
    arguments = arguments or ConversionArguments(**options)
    if arguments.calibration_samples < 0:
        raise BadInputError(
            f"calibration_samples must be 0 (weights only) or more, got {arguments.calibration_samples}."
        )
    if arguments.init == "fitted" and not arguments.calibration_samples:
        raise BadInputError("init 'fitted' fits the shared layer to calibration text: pass calibration_samples > 0.")
    loaded = load_teacher(teacher, arguments.revision)
    config = student_config(loaded, arguments)
    bert = loaded.bert.eval()
    teacher_layers = bert.encoder.layer
    shared_sources = parse_init(config.conversion_init, len(teacher_layers), config.teacher_layer_map)
    calibration = None
    batches = (
        calibration_inputs(loaded, arguments, calibration_texts, tokenizer) if arguments.calibration_samples else None
    )
    if batches is not None:
        # Gram matrices only where a fit reads them: the relaxations' mapped layers, the fitted shared layer's sources.
        fitted_layers = set(config.teacher_layer_map) if config.recursion_lora_rank else set()
        if config.conversion_init == "fitted":
            fitted_layers |= set(shared_sources)
        calibration = calibrate(bert, batches, sorted(fitted_layers))
    student = MiniAlbertForMaskedLM(config).eval()

    embeddings, teacher_embeddings = student.minialbert.embeddings, bert.embeddings
    word_embeddings = teacher_embeddings.word_embeddings.weight
    if embeddings.projection is None:
        embeddings.word_embeddings.weight.copy_(word_embeddings)
    else:
        # Every token keeps a weight of 1, so tokens the calibration text lacks are still fitted.
        token_weights = None if calibration is None else calibration.token_counts + 1
        factors, projection, mean = factorise_embeddings(word_embeddings, config.embedding_size, token_weights)
        embeddings.word_embeddings.weight.copy_(factors)
        embeddings.projection.weight.copy_(projection)
        embeddings.projection.bias.copy_(mean)
    for name in ("position_embeddings", "token_type_embeddings", "LayerNorm"):
        embeddings.get_submodule(name).load_state_dict(teacher_embeddings.get_submodule(name).state_dict())

    encoder = student.minialbert.encoder
    fit = calibration if config.conversion_init == "fitted" else None
    initialise_shared_layer(encoder.layer, [teacher_layers[k - 1] for k in shared_sources], fit)
    if encoder.relaxations is not None:
        for relaxation, k in zip(encoder.relaxations, config.teacher_layer_map, strict=True):
            initialise_relaxation(relaxation, encoder.layer, teacher_layers[k - 1], calibration)

    head = student.predictions
    if head.projection is not None:
        head.projection.weight.copy_(embeddings.projection.weight.T)
    if loaded.mlm_head is not None:
        head.dense.load_state_dict(loaded.mlm_head.transform.dense.state_dict())
        head.LayerNorm.load_state_dict(loaded.mlm_head.transform.LayerNorm.state_dict())
        head.decoder.bias.copy_(loaded.mlm_head.bias)
    else:
        logger.warning(
            "The teacher %s has no masked-LM head: the student's head starts from an identity transform, the "
            "embedding factorisation and a zero output bias.",
            loaded.name_or_path or type(bert).__name__,
        )
        head.dense.weight.copy_(torch.eye(config.hidden_size))
        head.dense.bias.zero_()
        head.decoder.bias.zero_()

    logger.info(
        "Converted %s into a %.2fM-parameter MiniAlbert: E=%d, %d recursions standing for teacher layers %s, "
        "shared layer from %s (teacher layers %s).",
        loaded.name_or_path,
        student.num_parameters() / 1e6,
        config.embedding_size,
        config.num_hidden_layers,
        config.teacher_layer_map,
        config.conversion_init,
        shared_sources,
    )
    return student
