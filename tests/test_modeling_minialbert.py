import copy
import json
import math

import pytest
import torch
import transformers
from safetensors import safe_open
from torch.nn import functional as F
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, pipeline
from transformers.testing_utils import CaptureLogger

from minialbert import (
    AUTO_CLASSES,
    MiniAlbertForMaskedLM,
    MiniAlbertForMultipleChoice,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
)
from minialbert.configuration_minialbert import AUTO_MAP, head_of
from minialbert.modeling_minialbert import MiniAlbertLayer

from .conftest import assert_remote_code_load_matches, assert_remote_code_loads_match, tiny_config

ALL_HEADS = list(AUTO_CLASSES.values())
# The published MiniALBERT checkpoints' layout (minialbert import-published), beside the default one.
PUBLISHED_LAYOUT = {"embedding_layout": "albert", "adapter_layout": "post_norm", "mlm_decoder": "untied"}
LAYOUTS = pytest.mark.parametrize("layout", [{}, PUBLISHED_LAYOUT], ids=["default", "published"])


def head_inputs(model_class, inputs):
    """The fixture batch in the shape each head expects."""
    if model_class is MiniAlbertForMultipleChoice:
        return {name: tensor.unsqueeze(1).expand(-1, 2, -1).contiguous() for name, tensor in inputs.items()}
    return inputs


def first_output(outputs):
    return outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs.to_tuple()[0]


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (zero-initialised adapters and deltas included) a random, non-trivial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# --- recursion and parameter sharing ------------------------------------------------------------


@pytest.mark.parametrize("num_hidden_layers", [1, 2, 6, 12])
def test_parameter_count_does_not_grow_with_recursions(num_hidden_layers):
    shared = count_parameters(MiniAlbertModel(tiny_config(use_adapters=False, num_hidden_layers=1)))
    deeper = MiniAlbertModel(tiny_config(use_adapters=False, num_hidden_layers=num_hidden_layers))
    assert count_parameters(deeper) == shared


def test_adapters_and_relaxation_add_exactly_their_per_recursion_size():
    config = tiny_config(use_adapters=False)
    base = count_parameters(MiniAlbertModel(config))
    hidden, bottleneck, intermediate, rank = 32, 32 // 16, 37, 4
    adapter = 2 * hidden + hidden * bottleneck + bottleneck + bottleneck * hidden + hidden
    delta = lambda fan_in, fan_out: rank * fan_in + fan_out * rank + fan_out  # noqa: E731
    relaxation = 4 * delta(hidden, hidden) + delta(hidden, intermediate) + delta(intermediate, hidden) + 4 * hidden
    with_adapters = MiniAlbertModel(tiny_config(use_adapters=True))
    with_both = MiniAlbertModel(tiny_config(use_adapters=True, recursion_lora_rank=rank))
    assert count_parameters(with_adapters) == base + 3 * 2 * adapter
    assert count_parameters(with_both) == base + 3 * (2 * adapter + relaxation)


def test_every_recursion_applies_the_same_layer(config, inputs):
    model = randomise(MiniAlbertModel(tiny_config(use_adapters=False))).eval()
    assert sum(isinstance(module, MiniAlbertLayer) for module in model.modules()) == 1
    calls = []
    model.encoder.layer.register_forward_hook(lambda module, args, output: calls.append(module))
    outputs = model(**inputs, output_hidden_states=True)
    assert len(calls) == config.num_hidden_layers and all(module is model.encoder.layer for module in calls)

    # The same function three times: applying the layer by hand to the embedding output reproduces every state.
    real = inputs["attention_mask"].bool()
    hidden_states = outputs.hidden_states[0]
    for recursion in range(config.num_hidden_layers):
        hidden_states, _ = model.encoder.layer(hidden_states, real[:, None, None, :])
        torch.testing.assert_close(hidden_states[real], outputs.hidden_states[recursion + 1][real])


def test_new_adapters_and_relaxation_start_as_exact_identities(config, inputs):
    plain = randomise(MiniAlbertModel(tiny_config(use_adapters=False))).eval()
    relaxed = MiniAlbertModel(tiny_config(use_adapters=True, recursion_lora_rank=4)).eval()
    missing, unexpected = relaxed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".adapters." in key or ".relaxations." in key for key in missing)
    torch.testing.assert_close(relaxed(**inputs).last_hidden_state, plain(**inputs).last_hidden_state)


def test_full_rank_relaxation_represents_distinct_layers_exactly(inputs):
    """With rank = hidden size, each recursion can be made to compute any other layer of the same shape."""
    config = tiny_config(use_adapters=False, recursion_lora_rank=32)
    model = randomise(MiniAlbertModel(config), seed=1).eval()
    targets = [randomise(MiniAlbertLayer(config), seed=10 + index).eval() for index in range(3)]
    shared = dict(model.encoder.layer.named_parameters())
    with torch.no_grad():
        for target, relaxation in zip(targets, model.encoder.relaxations, strict=True):
            for name, parameter in target.named_parameters():
                owner, kind = name.rsplit(".", 1)
                delta = relaxation.get_submodule(owner.split(".")[-1] + "_delta")
                difference = parameter - shared[name]
                if kind == "bias" and not owner.endswith("layer_norm"):
                    delta.bias.copy_(difference)
                elif kind == "weight" and not owner.endswith("layer_norm"):
                    u, s, vh = torch.linalg.svd(difference, full_matrices=False)
                    rank = s.numel()
                    delta.up.zero_()
                    delta.up[:, :rank].copy_(u * s)
                    delta.down.zero_()
                    delta.down[:rank].copy_(vh)
                else:
                    getattr(delta, kind).copy_(difference)

    real = inputs["attention_mask"].bool()
    outputs = model(**inputs, output_hidden_states=True)
    hidden_states = outputs.hidden_states[0]
    for target in targets:
        hidden_states, _ = target(hidden_states, real[:, None, None, :])
    torch.testing.assert_close(outputs.last_hidden_state[real], hidden_states[real], rtol=1e-4, atol=1e-4)


def test_merged_relaxations_compute_what_the_low_rank_pairs_do(inputs):
    """Merged per-recursion weights (inference, `merge_relaxations`) and the merge computed under autograd
    (training) give the shared-weights-plus-pairs outputs, and training through a merged model still reaches the
    pairs' parameters."""
    model = randomise(MiniAlbertModel(tiny_config(recursion_lora_rank=4)), seed=2).eval()
    real = inputs["attention_mask"].bool()
    with torch.no_grad():
        pairs = model(**inputs).last_hidden_state
    under_autograd = model(**inputs).last_hidden_state  # grad enabled: merged afresh
    model.merge_relaxations()
    assert model.encoder.relaxations_merged
    with torch.no_grad():
        merged = model(**inputs).last_hidden_state
    for got in (merged, under_autograd):
        torch.testing.assert_close(got[real], pairs[real], rtol=1e-5, atol=1e-5)
    assert not any("merged" in key for key in model.state_dict()), "merged copies are never saved"

    # Training ignores the kept copies: changed weights change the output, and gradients reach `up` and `down`.
    model.train()
    with torch.no_grad():
        model.encoder.relaxations[0].ffn_delta.up.add_(0.5)
    model(**inputs).last_hidden_state[real].sum().backward()
    delta = model.encoder.relaxations[0].ffn_delta
    assert delta.up.grad.abs().sum() > 0 and delta.down.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        stale = model(**inputs).last_hidden_state
        model.unmerge_relaxations()
        fresh = model(**inputs).last_hidden_state
    assert not model.encoder.relaxations_merged
    assert not torch.allclose(stale[real], fresh[real]), "the copies are what inference reads until unmerged"

    with pytest.raises(ValueError, match="has no relaxations to merge"):
        MiniAlbertModel(tiny_config()).encoder.merge_relaxations()


# --- attention, masks and inputs ------------------------------------------------------------------


@pytest.mark.parametrize("model_class", ALL_HEADS)
def test_eager_and_sdpa_agree(model_class, inputs):
    model = randomise(model_class(tiny_config(recursion_lora_rank=2))).eval()
    batch = head_inputs(model_class, inputs)
    assert model.config._attn_implementation == "sdpa"
    sdpa = first_output(model(**batch))
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    eager = first_output(model(**batch))
    torch.testing.assert_close(sdpa, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_padded_batches_run_on_real_tokens_with_the_same_values_and_gradients(inputs, attn_implementation):
    """The packed path (padded batch, no attention maps asked for) against the padded layout that
    `output_attentions=True` keeps: same real-token states and gradients, zeros at padding."""
    model = randomise(MiniAlbertModel(tiny_config(use_adapters=True, recursion_lora_rank=2)))
    model.set_attn_implementation(attn_implementation)
    real = inputs["attention_mask"].bool()
    assert not real.all()
    results = []
    for output_attentions in (False, True):
        model.zero_grad()
        outputs = model(**inputs, output_hidden_states=True, output_attentions=output_attentions)
        outputs.last_hidden_state[real].square().sum().backward()
        results.append((outputs, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}))
    (packed, packed_grads), (padded, padded_grads) = results
    for packed_state, padded_state in zip(packed.hidden_states[1:], padded.hidden_states[1:], strict=True):
        torch.testing.assert_close(packed_state[real], padded_state[real], rtol=1e-5, atol=1e-5)
        assert packed_state[~real].abs().max() == 0
    assert packed_grads.keys() == padded_grads.keys()
    for name, gradient in packed_grads.items():
        torch.testing.assert_close(gradient, padded_grads[name], rtol=1e-4, atol=1e-5, msg=name)


@LAYOUTS
@pytest.mark.parametrize("model_class", ALL_HEADS)
def test_padded_batch_without_a_mask_attends_everywhere_and_warns_as_bert_does(model_class, layout, inputs):
    """No mask means every token is real, as in BERT: the outputs of the all-ones mask it implies, and
    transformers' warning that the pad tokens among the ids may need one."""
    model = randomise(model_class(tiny_config(recursion_lora_rank=2, **layout))).eval()
    batch = head_inputs(model_class, {name: tensor for name, tensor in inputs.items() if name != "attention_mask"})
    assert (batch["input_ids"] == model.config.pad_token_id).any()
    transformers.utils.logging.warning_once.cache_clear()
    logger = transformers.utils.logging.get_logger("transformers.modeling_utils")
    with CaptureLogger(logger) as captured:
        unmasked = model(**batch).to_tuple()
    assert "We strongly recommend passing in an `attention_mask`" in captured.out
    all_ones = model(**batch, attention_mask=torch.ones_like(batch["input_ids"])).to_tuple()
    for left, right in zip(unmasked, all_ones, strict=True):
        torch.testing.assert_close(left, right, rtol=0, atol=0)


def test_fused_qkv_projection_equals_the_three_projections(inputs):
    attention = randomise(MiniAlbertModel(tiny_config())).encoder.layer.attention
    hidden_states = torch.randn(2, 9, 32)
    fused = attention.project_qkv(hidden_states, relaxation=None)
    separate = torch.cat(
        [attention.query(hidden_states), attention.key(hidden_states), attention.value(hidden_states)], -1
    )
    torch.testing.assert_close(fused, separate, rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_real_tokens(inputs):
    model = randomise(MiniAlbertModel(tiny_config())).eval()
    padded = model(**inputs).last_hidden_state
    alone = model(**{name: tensor[1:, :5] for name, tensor in inputs.items()}).last_hidden_state
    torch.testing.assert_close(padded[1:, :5], alone, rtol=1e-5, atol=1e-5)


def test_attention_maps_are_pre_dropout_probabilities(inputs):
    model = randomise(MiniAlbertModel(tiny_config(attention_probs_dropout_prob=0.5))).train()
    outputs = model(**inputs, output_attentions=True, output_hidden_states=True)
    assert len(outputs.attentions) == 3 and len(outputs.hidden_states) == 4
    for probabilities in outputs.attentions:
        assert probabilities.shape == (2, 4, 9, 9)
        # After dropout rows would be rescaled by 2 or zeroed; before dropout they are distributions.
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(2, 4, 9))
        assert probabilities[1, :, :, 5:].abs().max() == 0


def test_sdpa_and_eager_agree_and_eager_maps_are_the_attention_probabilities(inputs):
    config = tiny_config(use_adapters=False)  # then each recursion's attention reads the previous hidden state
    model = randomise(MiniAlbertModel(config)).eval()
    assert model.config._attn_implementation == "sdpa"
    sdpa = model(**inputs).last_hidden_state  # no maps asked: the SDPA kernel runs
    model.set_attn_implementation("eager")
    eager = model(**inputs, output_attentions=True, output_hidden_states=True)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(sdpa[real], eager.last_hidden_state[real])

    # The maps, recomputed independently: softmax(Q K^T / sqrt(d)) over the real keys, for each recursion.
    attention = model.encoder.layer.attention
    batch, length = inputs["input_ids"].shape
    heads = config.num_attention_heads
    for states, maps in zip(eager.hidden_states[:-1], eager.attentions, strict=True):
        query, key = (
            projection(states).view(batch, length, heads, -1).transpose(1, 2)
            for projection in (attention.query, attention.key)
        )
        scores = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])
        expected = scores.masked_fill(~real[:, None, None, :], float("-inf")).softmax(-1)
        rows = real[:, None, :, None].expand_as(maps)  # padded query rows carry no meaning
        torch.testing.assert_close(maps[rows], expected[rows])


def test_inputs_embeds_token_types_and_positions_are_honoured(inputs):
    model = randomise(MiniAlbertModel(tiny_config())).eval()
    reference = model(**inputs).last_hidden_state
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    from_embeds = model(
        inputs_embeds=embeds, attention_mask=inputs["attention_mask"], token_type_ids=inputs["token_type_ids"]
    ).last_hidden_state
    torch.testing.assert_close(from_embeds, reference)

    without_types = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    assert not torch.allclose(without_types.last_hidden_state, reference)
    explicit_positions = model(**inputs, position_ids=torch.arange(9).expand(2, -1)).last_hidden_state
    torch.testing.assert_close(explicit_positions, reference)
    shifted = model(**inputs, position_ids=torch.arange(9).expand(2, -1) + 3).last_hidden_state
    assert not torch.allclose(shifted, reference)

    with pytest.raises(ValueError, match="exactly one of `input_ids` and `inputs_embeds`"):
        model(input_ids=inputs["input_ids"], inputs_embeds=embeds)


@pytest.mark.parametrize("model_class", ALL_HEADS)
def test_return_dict_false_gives_the_same_tuple(model_class, inputs):
    model = randomise(model_class(tiny_config())).eval()
    batch = head_inputs(model_class, inputs)
    as_dict = model(**batch)
    as_tuple = model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple)
    for left, right in zip(as_dict.to_tuple(), as_tuple, strict=True):
        torch.testing.assert_close(left, right)


def test_gradient_checkpointing_gives_the_same_gradients(inputs):
    labels = torch.tensor([0, 2])
    reference = randomise(MiniAlbertForSequenceClassification(tiny_config(recursion_lora_rank=2))).train()
    checkpointed = copy.deepcopy(reference)
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.minialbert.encoder.layer.gradient_checkpointing

    for model in (reference, checkpointed):
        model(**inputs, labels=labels).loss.backward()
    gradients = dict(reference.named_parameters())
    for name, parameter in checkpointed.named_parameters():
        assert parameter.grad is not None, name
        torch.testing.assert_close(parameter.grad, gradients[name].grad, rtol=1e-5, atol=1e-6, msg=name)


# --- heads and losses ---------------------------------------------------------------------------


def test_masked_lm_decoder_is_tied_to_the_e_wide_embeddings(inputs):
    model = MiniAlbertForMaskedLM(tiny_config())
    assert model.predictions.decoder.weight is model.minialbert.embeddings.word_embeddings.weight
    assert model.predictions.decoder.weight.shape == (99, 16)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 2] = inputs["input_ids"][:, 2]
    outputs = randomise(model).eval()(**inputs, labels=labels)
    expected = F.cross_entropy(outputs.logits[:, 2], labels[:, 2])
    torch.testing.assert_close(outputs.loss, expected)


def test_sequence_classification_losses_for_every_problem_type(inputs):
    model = randomise(MiniAlbertForSequenceClassification(tiny_config())).eval()
    cls = model.minialbert(**inputs).last_hidden_state[:, 0]
    logits = model.classifier(cls)

    single = model(**inputs, labels=torch.tensor([2, 0]))
    assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(single.logits, logits)
    torch.testing.assert_close(single.loss, F.cross_entropy(logits, torch.tensor([2, 0])))

    multi_model = randomise(MiniAlbertForSequenceClassification(tiny_config())).eval()
    multi_hot = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    multi = multi_model(**inputs, labels=multi_hot)
    assert multi_model.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(multi.loss, F.binary_cross_entropy_with_logits(multi.logits, multi_hot))

    regression_model = randomise(MiniAlbertForSequenceClassification(tiny_config(num_labels=1))).eval()
    scores = torch.tensor([0.5, -1.25])
    regression = regression_model(**inputs, labels=scores)
    assert regression_model.config.problem_type == "regression"
    torch.testing.assert_close(regression.loss, ((regression.logits.squeeze(-1) - scores) ** 2).mean())


def test_token_classification_loss_ignores_masked_labels(inputs):
    model = randomise(MiniAlbertForTokenClassification(tiny_config())).eval()
    labels = torch.randint(0, 3, inputs["input_ids"].shape, generator=torch.Generator().manual_seed(3))
    labels[inputs["attention_mask"] == 0] = -100
    outputs = model(**inputs, labels=labels)
    keep = labels != -100
    torch.testing.assert_close(outputs.loss, F.cross_entropy(outputs.logits[keep], labels[keep]))


def test_question_answering_loss_ignores_out_of_range_positions(inputs):
    model = randomise(MiniAlbertForQuestionAnswering(tiny_config())).eval()
    outputs = model(**inputs, start_positions=torch.tensor([1, 50]), end_positions=torch.tensor([3, 4]))
    start = F.cross_entropy(outputs.start_logits[:1], torch.tensor([1]))
    end = F.cross_entropy(outputs.end_logits, torch.tensor([3, 4]))
    torch.testing.assert_close(outputs.loss, (start + end) / 2)


def test_multiple_choice_scores_each_choice_independently(inputs):
    model = randomise(MiniAlbertForMultipleChoice(tiny_config())).eval()
    choices = {name: torch.stack([tensor, tensor.flip(0)], dim=1) for name, tensor in inputs.items()}
    outputs = model(**choices, labels=torch.tensor([1, 0]))
    assert outputs.logits.shape == (2, 2)
    per_choice = model.classifier(model.minialbert(**inputs).last_hidden_state[:, 0]).squeeze(-1)
    torch.testing.assert_close(outputs.logits[:, 0], per_choice)
    torch.testing.assert_close(outputs.logits[:, 1], per_choice.flip(0))
    torch.testing.assert_close(outputs.loss, F.cross_entropy(outputs.logits, torch.tensor([1, 0])))


@pytest.mark.parametrize("model_class", [MiniAlbertForMaskedLM, MiniAlbertForMultipleChoice])
def test_losses_are_sums_over_num_items_in_batch_when_given(model_class, inputs):
    model = randomise(model_class(tiny_config())).eval()
    batch = head_inputs(model_class, inputs)
    if model_class is MiniAlbertForMaskedLM:
        labels = torch.full_like(inputs["input_ids"], -100)
        labels[0, [1, 6]] = inputs["input_ids"][0, [1, 6]]
        labels[1, 3] = inputs["input_ids"][1, 3]
    else:
        labels = torch.tensor([1, 0])
    mean = model(**batch, labels=labels).loss
    summed = model(**batch, labels=labels, num_items_in_batch=torch.tensor(7))
    torch.testing.assert_close(summed.loss, mean * int((labels != -100).sum()) / 7)


def test_gradient_accumulation_gives_the_update_of_one_large_batch(tmp_path):
    """Rows with different numbers of labelled tokens: only a loss summed over the Trainer's `num_items_in_batch`
    makes two accumulated half-batches equal one full batch."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 99, (4, 8), generator=generator)
    labels = torch.randint(0, 3, (4, 8), generator=generator)
    for row, labelled in enumerate([8, 2, 5, 1]):
        labels[row, labelled:] = -100
    dataset = Dataset.from_dict({"input_ids": input_ids.tolist(), "labels": labels.tolist()})
    initial = randomise(MiniAlbertForTokenClassification(tiny_config()))

    updated = []
    for batch_size, accumulation in [(4, 1), (2, 2)]:
        model = copy.deepcopy(initial)
        arguments = TrainingArguments(
            output_dir=str(tmp_path / f"{batch_size}x{accumulation}"),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            optim="sgd",
            learning_rate=1.0,
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
        )
        Trainer(model=model, args=arguments, train_dataset=dataset).train()
        updated.append(model)
    for (name, left), right in zip(updated[0].named_parameters(), updated[1].parameters(), strict=True):
        torch.testing.assert_close(left, right, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(updated[0].classifier.weight, initial.classifier.weight)


# --- saving, Auto classes and remote code -------------------------------------------------------


@LAYOUTS
@pytest.mark.parametrize("model_class", ALL_HEADS)
def test_save_and_auto_load_are_exact(model_class, layout, inputs, tmp_path):
    model = randomise(model_class(tiny_config(recursion_lora_rank=2, **layout))).eval()
    batch = head_inputs(model_class, inputs)
    model.save_pretrained(tmp_path)

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "minialbert"
    assert config["auto_map"] == AUTO_MAP
    assert config["architectures"] == [model_class.__name__]
    assert (tmp_path / "configuration_minialbert.py").is_file()
    assert (tmp_path / "modeling_minialbert.py").is_file()

    auto_class = getattr(transformers, head_of(model_class.__name__).auto_class)
    loaded = auto_class.from_pretrained(tmp_path).eval()
    assert type(loaded) is model_class
    for left, right in zip(model(**batch).to_tuple(), loaded(**batch).to_tuple(), strict=True):
        torch.testing.assert_close(left, right, rtol=0, atol=0)


def test_published_layout_modules_compute_what_their_description_says(inputs):
    model = randomise(MiniAlbertForMaskedLM(tiny_config(**PUBLISHED_LAYOUT))).eval()
    embeddings, adapter = model.minialbert.embeddings, model.minialbert.encoder.adapters[0].before_attention
    assert embeddings.position_embeddings.weight.shape == (64, 16) and embeddings.LayerNorm.weight.shape == (16,)
    words = embeddings.word_embeddings(inputs["input_ids"])
    positions = embeddings.position_embeddings(torch.arange(9))
    types = embeddings.token_type_embeddings(inputs["token_type_ids"])
    expected = embeddings.projection(embeddings.LayerNorm(words + positions + types))
    torch.testing.assert_close(embeddings(inputs["input_ids"], inputs["token_type_ids"]), expected)
    x = torch.randn(2, 9, 32)
    torch.testing.assert_close(adapter(x), adapter.LayerNorm(x + adapter.up(F.gelu(adapter.down(x)))))
    assert model.predictions.decoder.weight.shape == (99, 32) and model.predictions.projection is None
    assert model.predictions.decoder.weight is not model.minialbert.embeddings.word_embeddings.weight
    # E == H: no projector, as the authors' code builds none.
    assert MiniAlbertModel(tiny_config(embedding_size=32, **PUBLISHED_LAYOUT)).embeddings.projection is None


def test_saved_masked_lm_stores_the_tied_matrix_once(tmp_path):
    model = MiniAlbertForMaskedLM(tiny_config())
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:
        keys = set(weights.keys())
    assert "minialbert.embeddings.word_embeddings.weight" in keys
    assert "predictions.decoder.weight" not in keys
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert loaded.predictions.decoder.weight is loaded.minialbert.embeddings.word_embeddings.weight


def test_tied_layout_with_untied_weights_keeps_its_own_e_wide_decoder_through_save_and_load(tmp_path, inputs):
    """`tie_word_embeddings=False` on the tied layout (transformers' common test sets it after building the
    config): the head still projects to E, its decoder is a matrix of its own, saved, and loaded back exactly."""
    config = tiny_config()
    config.tie_word_embeddings = False
    model = randomise(MiniAlbertForMaskedLM(config)).eval()
    decoder, embeddings = model.predictions.decoder.weight, model.minialbert.embeddings.word_embeddings.weight
    assert decoder is not embeddings and decoder.shape == embeddings.shape == (99, 16)
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as weights:
        assert "predictions.decoder.weight" in set(weights.keys())
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert loaded.config.tie_word_embeddings is False
    assert loaded.predictions.decoder.weight is not loaded.minialbert.embeddings.word_embeddings.weight
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


def test_base_model_loads_from_a_head_checkpoint(tmp_path, inputs):
    model = randomise(MiniAlbertForMaskedLM(tiny_config())).eval()
    model.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(base(**inputs).last_hidden_state, model.minialbert(**inputs).last_hidden_state)


def test_remote_code_load_without_the_package_is_exact(inputs, tmp_path):
    """Every head in both layouts, loaded through its Auto class from the saved code alone (one process)."""
    cases = []
    for layout_name, layout in (("default", {}), ("published", PUBLISHED_LAYOUT)):
        for model_class in ALL_HEADS:
            model = randomise(model_class(tiny_config(recursion_lora_rank=2, **layout))).eval()
            folder = tmp_path / f"{model_class.__name__}-{layout_name}"
            model.save_pretrained(folder)
            auto_class = head_of(model_class.__name__).auto_class
            cases.append((model, folder, auto_class, head_inputs(model_class, inputs)))
    assert_remote_code_loads_match(cases, tmp_path)


def test_fill_mask_pipeline_runs_with_the_teacher_tokenizer(teacher_path, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    config = tiny_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=128)
    model = MiniAlbertForMaskedLM(config)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    fill_mask = pipeline("fill-mask", model=str(tmp_path), trust_remote_code=True)
    predictions = fill_mask(f"The capital of France is {tokenizer.mask_token}.", top_k=3)
    assert len(predictions) == 3
    assert all(prediction["token"] < tokenizer.vocab_size for prediction in predictions)
    everything = fill_mask(f"Hello {tokenizer.mask_token}!", top_k=config.vocab_size)
    assert abs(sum(prediction["score"] for prediction in everything) - 1) < 1e-4


def test_masked_lm_prediction_mask_computes_the_same_logits_and_loss(inputs):
    model = randomise(MiniAlbertForMaskedLM(tiny_config())).eval()
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[0, [1, 6]] = inputs["input_ids"][0, [1, 6]]
    labels[1, 3] = inputs["input_ids"][1, 3]
    full = model(**inputs, labels=labels)
    sparse = model(**inputs, labels=labels, prediction_mask=labels != -100)
    assert sparse.logits.shape == (3, 99)
    torch.testing.assert_close(sparse.logits, full.logits[labels != -100])
    torch.testing.assert_close(sparse.loss, full.loss)


# --- elastic depth ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("overrides", [{}, {"recursion_lora_rank": 4}, {"use_adapters": False}])
def test_a_student_run_at_depth_d_equals_a_fresh_d_recursion_model_with_the_same_weights(
    depth, overrides, inputs, tmp_path
):
    full = randomise(MiniAlbertForMaskedLM(tiny_config(**overrides))).eval()
    full.save_pretrained(tmp_path)
    elastic = AutoModelForMaskedLM.from_pretrained(tmp_path, num_recursions=depth).eval()
    assert elastic.config.num_recursions == depth
    fresh = MiniAlbertForMaskedLM(tiny_config(num_hidden_layers=depth, **overrides)).eval()
    # The fresh model holds the weights of the first `depth` recursions, and nothing else.
    state = {
        name: value
        for name, value in full.state_dict().items()
        if not any(
            f"{stack}.{recursion}." in name for stack in ("adapters", "relaxations") for recursion in range(depth, 3)
        )
    }
    fresh.load_state_dict(state, strict=True)
    with torch.no_grad():
        got = elastic(**inputs, output_hidden_states=True, output_attentions=True)
        want = fresh(**inputs, output_hidden_states=True, output_attentions=True)
    assert len(got.hidden_states) == depth + 1 and len(got.attentions) == depth
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=0)
    for have, expected in zip(got.hidden_states + got.attentions, want.hidden_states + want.attentions, strict=True):
        torch.testing.assert_close(have, expected, rtol=0, atol=0)
    # A run at depth d is the first d recursions of the full run (what multi-depth distillation relies on).
    with torch.no_grad():
        whole = full.minialbert(**inputs, output_hidden_states=True, output_attentions=True)
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(got.hidden_states[-1][real], whole.hidden_states[depth][real], rtol=0, atol=0)
    # The later recursions' weights stay loaded, and saving keeps them and the chosen depth.
    elastic.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "saved", num_recursions=None).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, full(**inputs).logits, rtol=0, atol=0)


def test_elastic_depth_loads_through_remote_code_and_refuses_depths_the_model_does_not_hold(inputs, tmp_path):
    randomise(MiniAlbertModel(tiny_config())).save_pretrained(tmp_path)
    expected = MiniAlbertModel.from_pretrained(tmp_path, num_recursions=2).eval()
    expected.save_pretrained(tmp_path / "depth-2")  # config.json records the depth, and the code files go along
    assert json.loads((tmp_path / "depth-2" / "config.json").read_text())["num_recursions"] == 2
    assert_remote_code_load_matches(expected, tmp_path / "depth-2", "AutoModel", inputs, tmp_path)
    for value, message in [
        (
            4,
            "`num_recursions` 4 is more than the 3 recursions this model holds weights for; pass a value from 1 to 3.",
        ),
        (0, "`num_recursions` must be a positive integer (or None for all 3), got 0."),
        (1.5, "`num_recursions` must be a positive integer (or None for all 3), got 1.5."),
    ]:
        with pytest.raises(ValueError) as error:
            AutoModel.from_pretrained(tmp_path, num_recursions=value)
        assert str(error.value) == message
        with pytest.raises(ValueError, match="num_recursions"):
            tiny_config(num_recursions=value)
    # Changed after loading: the next forward refuses it too.
    expected.config.num_recursions = 5
    with pytest.raises(ValueError, match="more than the 3 recursions"):
        expected(**inputs)
