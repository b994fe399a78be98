"""The distillation loss: its terms as pure functions of student and teacher outputs (fp32, real tokens only),
`teacher_targets` (everything they need from the frozen teacher, computed without autograd), and `DistillationLoss`,
the recipe's terms for a student and a batch apart from any training loop."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedTokenizerBase

from ..data import masked_lm_collator
from ..held_out import unmasked
from ..sentence_embeddings import pool
from ..teacher import Teacher, layer_map
from .recipes import DEPTH_LOSS_NAMES, RECIPE_TERMS, DepthSchedule, DistillationArguments, Recipe


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1)


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos over real tokens."""
    return masked_mean(1 - F.cosine_similarity(student.float(), teacher.float(), dim=-1), real)


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per head and real query row, averaged. Padded keys hold zero probability in both."""
    student, teacher = student.float(), teacher.float()
    kl = (torch.xlogy(teacher, teacher) - teacher * student.clamp_min(1e-12).log()).sum(-1)
    return masked_mean(kl, real[:, None, :].expand_as(kl))


def logit_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened vocabulary distributions, scaled by T² (Hinton et al.)."""
    student = F.log_softmax(student.float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def relational_loss(student: torch.Tensor, teacher: torch.Tensor, form: str, temperature: float) -> torch.Tensor:
    """In-batch relational distillation of sentence embeddings (`student`, `teacher`: batch x width): how the
    student's cosine similarities between the batch's sentences differ from the teacher's, over pairs of distinct
    sentences. `mse`: mean squared difference of the two similarity matrices off the diagonal; `kl`:
    KL(teacher || student) between each row's softmax over the other sentences at `temperature`, averaged over rows
    (as in relational and contrastive distillation). A batch of one sentence has no pairs and gives 0."""
    student, teacher = F.normalize(student.float(), dim=-1), F.normalize(teacher.float(), dim=-1)
    count = len(student)
    if count < 2:
        return student.sum() * 0
    others = ~torch.eye(count, dtype=torch.bool, device=student.device)
    student_similarities = (student @ student.T)[others].view(count, count - 1)
    teacher_similarities = (teacher @ teacher.T)[others].view(count, count - 1)
    if form == "mse":
        return (student_similarities - teacher_similarities).square().mean()
    student_log = F.log_softmax(student_similarities / temperature, dim=-1)
    teacher_log = F.log_softmax(teacher_similarities / temperature, dim=-1)
    return F.kl_div(student_log, teacher_log, log_target=True, reduction="batchmean")


def bert_attention_probabilities(layer: nn.Module, hidden_states: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """One BERT layer's attention probabilities, recomputed from its input hidden states.

    The teacher itself runs SDPA and returns hidden states only; the maps of the mapped layers are rebuilt
    from their inputs (two projections and a softmax), so unmapped layers never materialise attention.
    """
    attention = layer.attention.self
    shape = (*hidden_states.shape[:-1], attention.num_attention_heads, attention.attention_head_size)
    query = attention.query(hidden_states).view(shape).transpose(1, 2).float()
    key = attention.key(hidden_states).view(shape).transpose(1, 2).float()
    scores = (query @ key.transpose(-1, -2)) * attention.attention_head_size**-0.5
    scores = scores.masked_fill(~real[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1)


def mapped_attention_kl(
    student_attentions: tuple[torch.Tensor, ...], teacher_attentions: dict[int, torch.Tensor], layers, real
) -> torch.Tensor:
    """Attention KL averaged over every (recursion, mapped teacher layer) pair."""
    pairs = zip(student_attentions, layers, strict=True)
    return torch.stack([attention_kl(student, teacher_attentions[k], real) for student, k in pairs]).mean()


@dataclass
class TeacherTargets:
    hidden_states: tuple[torch.Tensor, ...]
    attentions: dict[int, torch.Tensor]
    logits: torch.Tensor | None


@torch.no_grad()
def teacher_targets(
    teacher: Teacher,
    inputs: dict[str, torch.Tensor],
    layers: list[int],
    with_attention: bool,
    prediction_mask: torch.Tensor | None,
) -> TeacherTargets:
    """Everything the losses need from the teacher, with no autograd: hidden states, the attention maps of
    `layers` (1-based) only, and masked-LM logits at `prediction_mask` only (when the teacher has a head)."""
    real = inputs["attention_mask"].bool()
    outputs = teacher.bert(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        token_type_ids=inputs.get("token_type_ids"),
        output_hidden_states=True,
    )
    hidden_states = outputs.hidden_states
    attentions = {}
    if with_attention:
        for k in set(layers):
            attentions[k] = bert_attention_probabilities(teacher.bert.encoder.layer[k - 1], hidden_states[k - 1], real)
    logits = None
    if teacher.mlm_head is not None and prediction_mask is not None:
        logits = teacher.mlm_head(hidden_states[-1][prediction_mask])
    return TeacherTargets(hidden_states, attentions, logits)


# The terms of the masked-LM head's predictions, and the terms read from the student's states (its embedding
# output, hidden states and attention maps), which follow the teacher on `distill_inputs`.
PREDICTION_TERMS = tuple(term.name for term in RECIPE_TERMS if term.reads == "predictions")
STATE_TERMS = tuple(term.name for term in RECIPE_TERMS if term.reads != "predictions")


class DistillationLoss:
    """The MiniAlbert distillation loss of a student against a frozen BERT teacher, apart from any training loop:
    `terms(student, batch)` gives each term of the recipe, unweighted; `weights()` gives what each term weighs.

    Batches are masked here (`mask`), with `DataCollatorForLanguageModeling`'s masking and the global RNG, rather
    than in the data loader: the Trainer restores the RNG state of a checkpoint only after it has fetched the first
    batch of a resumed run, so loader-side masks would make a resumed run diverge from an uninterrupted one. Batches
    that already carry `labels` (a masking collator of your own) are used as they are.

    Args:
        teacher: the loaded teacher (`minialbert.teacher.load_teacher`), frozen and on the training device.
        layer_map: the teacher layer (1-based) each recursion follows.
        recipe: which terms, with which weights and forms (`resolve_recipe`).
        tokenizer: masks the batches.
        args: the `DistillationArguments` the terms read (temperatures, masking probability, bf16, device).
    """

    def __init__(
        self,
        teacher: Teacher,
        layer_map: list[int],
        recipe: Recipe,
        tokenizer: PreTrainedTokenizerBase,
        args: DistillationArguments,
    ):
        self.teacher, self.layer_map, self.recipe, self.args = teacher, layer_map, recipe, args
        self.masking = masked_lm_collator(tokenizer, args.mlm_probability)
        self.depth_schedule = DepthSchedule.parse(recipe.depth_schedule)
        # Under the `grow` schedule a shallow step follows its own recursions' teacher layers, the sentence term
        # included.
        self.grows = self.depth_schedule.kind == "grow"

    def weights(self) -> dict[str, float]:
        """Each term's weight; with elastic depth also `{term}@{d}` (sum) or `{term}@sampled` (sample) for the
        shallower depths' terms: the term's weight times the depth's (for sample: times all their sum)."""
        weights = dict(self.recipe.weights)
        for depth, depth_weight in self.depth_weights().items():
            for name in DEPTH_LOSS_NAMES:
                weights[f"{name}@{depth}"] = self.recipe.weights[name] * depth_weight
        return weights

    def depth_weights(self) -> dict[int | str, float]:
        """The shallower depths' weights by suffix: every depth ("sum"), or "sampled" for the one drawn per step."""
        depth_weights = {
            depth: weight for depth, weight in enumerate(self.recipe.depth_weights or [], start=1) if weight > 0
        }
        if self.recipe.elastic_depth == "sample":
            return {"sampled": sum(depth_weights.values())}
        return depth_weights

    def shallower_depths(self) -> dict[int | str, int]:
        """The shallower depths this step trains, by the suffix of their terms' names."""
        if self.recipe.elastic_depth == "off":
            return {}
        if self.recipe.elastic_depth == "sum":
            return {depth: depth for depth in self.depth_weights()}
        # Drawn with the global RNG, which checkpoints restore: a resumed run draws what the uninterrupted one did.
        weights = torch.tensor(self.recipe.depth_weights)
        return {"sampled": int(torch.multinomial(weights, 1)) + 1}

    def mask(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mask a padded batch for masked-LM (a no-op for batches that already have `labels`)."""
        inputs = dict(inputs)
        special_tokens_mask = inputs.pop("special_tokens_mask", None)
        if "labels" not in inputs:
            input_ids, labels = self.masking.torch_mask_tokens(
                inputs["input_ids"].cpu().clone(),
                special_tokens_mask.cpu() if special_tokens_mask is not None else None,
            )
            device = inputs["input_ids"].device
            inputs["input_ids"], inputs["labels"] = input_ids.to(device), labels.to(device)
        return inputs

    def hidden_state_loss(self, student: torch.Tensor, teacher: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.recipe.hidden_loss == "mse":
            return masked_mean((student.float() - teacher.float()).square().mean(-1), real)
        return cosine_loss(student, teacher, real)

    def sentence_embedding_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Between pooled sentence embeddings, sentence by sentence."""
        if self.recipe.sentence_loss == "mse":
            return F.mse_loss(student, teacher)
        return 1 - F.cosine_similarity(student, teacher, dim=-1).mean()

    def terms(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], depth: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Each loss term (unweighted) for one batch. `depth`: the recursions `model` runs (default: all; the caller
        runs it there, as `DistillationTrainer` does with `running_depth`); a shallower step follows the teacher
        layers a student of that depth follows."""
        weights = self.weights()
        predicts = any(weights[name] > 0 for name in PREDICTION_TERMS)
        distills = any(weights[name] > 0 for name in STATE_TERMS)
        on_masked = self.recipe.distill_inputs == "masked"
        depth = depth or len(self.layer_map)
        losses = {}
        if predicts or on_masked:
            masked = self.mask(inputs)
            losses |= self.pass_losses(model, masked, predicts=predicts, distills=distills and on_masked, depth=depth)
        if distills and not on_masked:
            losses |= self.pass_losses(model, self.unmasked(inputs), predicts=False, distills=True, depth=depth)
        return losses

    def layers_at(self, depth: int) -> list[int]:
        """The teacher layers the student's first `depth` recursions follow: the first `depth` of the layer map
        under the `grow` depth schedule, else those a `depth`-recursion student follows."""
        if depth == len(self.layer_map) or self.grows:
            return self.layer_map[:depth]
        return layer_map(self.teacher.bert.config.num_hidden_layers, depth)

    # A batch as inference sees it: a batch masked by `mask` (for evaluation) or by a masking collator of your own,
    # with its original tokens restored and no labels.
    unmasked = staticmethod(unmasked)

    def pass_losses(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        predicts: bool,
        distills: bool,
        depth: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The terms one forward pass of student and teacher gives: the masked-LM and logit terms (`predicts`,
        on a masked batch with `labels`) and the distillation terms (`distills`), the student running `depth`
        recursions (default: all)."""
        layers = self.layers_at(depth or len(self.layer_map))
        weights = self.weights()
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        real = inputs["attention_mask"].bool()
        # An all-False mask skips the vocabulary projection when only hidden states are wanted.
        prediction_mask = labels != -100 if predicts else torch.zeros_like(real)
        with_attention = distills and weights["attention"] > 0
        outputs = model(
            **inputs, prediction_mask=prediction_mask, output_hidden_states=distills, output_attentions=with_attention
        )
        # A shallower depth's outputs are the first recursions' of this pass: no second forward is needed.
        depths = {suffix: d for suffix, d in self.shallower_depths().items() if d < len(layers)} if distills else {}
        num_teacher_layers = self.teacher.bert.config.num_hidden_layers
        depth_layers = {suffix: layer_map(num_teacher_layers, depth) for suffix, depth in depths.items()}
        losses = {}
        if predicts:
            losses["mlm"] = F.cross_entropy(outputs.logits.float(), labels[prediction_mask])
        if not (distills or weights["logit"] > 0):
            return losses
        with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=self.args.bf16):
            targets = teacher_targets(
                self.teacher,
                inputs,
                sorted(set(layers).union(*depth_layers.values())),
                with_attention,
                prediction_mask if predicts and weights["logit"] > 0 else None,
            )
        if predicts and weights["logit"] > 0:
            losses["logit"] = logit_kl(outputs.logits, targets.logits, self.args.temperature)
        if not distills:
            return losses
        if weights["embedding"] > 0:
            losses["embedding"] = cosine_loss(outputs.hidden_states[0], targets.hidden_states[0], real)
        final = layers[-1] if self.grows and len(layers) < len(self.layer_map) else -1
        losses |= self.depth_losses(outputs.hidden_states, outputs.attentions, targets, layers, inputs, final)
        for suffix, depth in depths.items():
            attentions = outputs.attentions[:depth] if with_attention else None
            terms = self.depth_losses(
                outputs.hidden_states[: depth + 1], attentions, targets, depth_layers[suffix], inputs
            )
            losses |= {f"{name}@{suffix}": value for name, value in terms.items()}
        return losses

    def depth_losses(
        self,
        hidden_states: tuple[torch.Tensor, ...],
        attentions: tuple[torch.Tensor, ...] | None,
        targets: TeacherTargets,
        layers: list[int],
        inputs: dict[str, torch.Tensor],
        teacher_final: int = -1,
    ) -> dict[str, torch.Tensor]:
        """The terms of the student's first `len(layers)` recursions (`hidden_states`: the embedding output and one
        state per recursion) against the teacher layers `layers`: hidden, attention, sentence and relational (the
        sentence terms against the teacher state `teacher_final`, by default its last)."""
        weights = self.weights()
        real = inputs["attention_mask"].bool()
        losses = {}
        pairs = list(zip(hidden_states[1:], layers, strict=True))
        if self.recipe.hidden_layers == "last":
            pairs = pairs[-1:]
        if weights["hidden"] > 0:
            losses["hidden"] = torch.stack(
                [self.hidden_state_loss(student, targets.hidden_states[k], real) for student, k in pairs]
            ).mean()
        if attentions is not None:
            losses["attention"] = mapped_attention_kl(attentions, targets.attentions, layers, real)
        if weights["sentence"] > 0 or weights["relational"] > 0:
            student_embeddings = pool(
                hidden_states[-1].float(), inputs["attention_mask"], self.recipe.sentence_pooling
            )
            teacher_embeddings = pool(
                targets.hidden_states[teacher_final].float(), inputs["attention_mask"], self.recipe.sentence_pooling
            )
            if weights["sentence"] > 0:
                losses["sentence"] = self.sentence_embedding_loss(student_embeddings, teacher_embeddings)
            if weights["relational"] > 0:
                losses["relational"] = relational_loss(
                    student_embeddings,
                    teacher_embeddings,
                    self.recipe.relational_loss,
                    self.args.relational_temperature,
                )
        return losses
