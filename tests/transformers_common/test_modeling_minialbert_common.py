"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) over every MiniAlbert head, in the
default layout and in the published checkpoints' layout, as transformers tests ALBERT
(`tests/models/albert/test_modeling_albert.py`).

The common files come from the sdist of the installed transformers (`python tests/transformers_common/fetch.py`);
`python -m pytest -q -n 2 tests/transformers_common` runs them (`.ci/run` does, as a step of its own). Tests the
suite skips by its own conditions (no GPU, no RoPE, no MoE, ...) stay skipped with their reasons; none is switched off
here: every test that applies to an encoder passes as it is.
"""

import unittest
from contextlib import ExitStack
from unittest import mock

from transformers.testing_utils import require_torch, torch_device

from minialbert import (
    AUTO_CLASSES,
    MiniAlbertConfig,
    MiniAlbertForMaskedLM,
    MiniAlbertForMultipleChoice,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
)

from .test_configuration_common import ConfigTester
from .test_modeling_common import ModelTesterMixin, ids_tensor, random_attention_mask

# The published MiniALBERT checkpoints' layout (`minialbert import-published`), beside the default one.
PUBLISHED_LAYOUT = {"embedding_layout": "albert", "adapter_layout": "post_norm", "mlm_decoder": "untied"}

registered_names = ExitStack()


def setUpModule():
    """The common tests choose labels, the multiple-choice layout and which classes are bare encoders from
    transformers' per-task tables of model names, which list its built-in models: MiniAlbert's heads go into them
    as a built-in model's would, for this module only (its Auto registration, `minialbert.AUTO_CLASSES`, stays as
    it is)."""
    for auto_class, model_class in AUTO_CLASSES.items():
        names = auto_class._model_mapping._model_mapping
        registered_names.enter_context(mock.patch.dict(names, {MiniAlbertConfig.model_type: model_class.__name__}))


def tearDownModule():
    registered_names.close()


class MiniAlbertModelTester:
    def __init__(
        self,
        parent: unittest.TestCase,
        layout: dict[str, str],
        batch_size: int = 13,
        seq_length: int = 7,
        is_training: bool = True,
        vocab_size: int = 99,
        embedding_size: int = 16,
        hidden_size: int = 32,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 37,
        recursion_lora_rank: int = 2,
        type_vocab_size: int = 16,
        num_labels: int = 3,
        num_choices: int = 4,
    ):
        self.parent = parent
        self.layout = layout
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.recursion_lora_rank = recursion_lora_rank
        self.type_vocab_size = type_vocab_size
        self.num_labels = num_labels
        self.num_choices = num_choices

    def get_config(self) -> MiniAlbertConfig:
        return MiniAlbertConfig(
            vocab_size=self.vocab_size,
            embedding_size=self.embedding_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            recursion_lora_rank=self.recursion_lora_rank,
            type_vocab_size=self.type_vocab_size,
            max_position_embeddings=512,
            num_labels=self.num_labels,
            **self.layout,
        )

    def prepare_config_and_inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        input_mask = random_attention_mask([self.batch_size, self.seq_length])
        token_type_ids = ids_tensor([self.batch_size, self.seq_length], self.type_vocab_size)
        sequence_labels = ids_tensor([self.batch_size], self.num_labels)
        token_labels = ids_tensor([self.batch_size, self.seq_length], self.num_labels)
        choice_labels = ids_tensor([self.batch_size], self.num_choices)
        config = self.get_config()
        return config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels, choice_labels

    def prepare_config_and_inputs_for_common(self):
        config, input_ids, token_type_ids, input_mask, *_ = self.prepare_config_and_inputs()
        return config, {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": input_mask}

    def eval_model(self, model_class, config):
        return model_class(config).to(torch_device).eval()

    def create_and_check_model(self, config, input_ids, token_type_ids, input_mask, *labels):
        model = self.eval_model(MiniAlbertModel, config)
        for result in (
            model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids),
            model(input_ids, token_type_ids=token_type_ids),
            model(input_ids),
        ):
            self.parent.assertEqual(
                result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size)
            )

    def create_and_check_for_masked_lm(
        self, config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels, choice_labels
    ):
        model = self.eval_model(MiniAlbertForMaskedLM, config)
        result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.vocab_size))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_for_question_answering(
        self, config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels, choice_labels
    ):
        model = self.eval_model(MiniAlbertForQuestionAnswering, config)
        result = model(
            input_ids,
            attention_mask=input_mask,
            token_type_ids=token_type_ids,
            start_positions=sequence_labels,
            end_positions=sequence_labels,
        )
        self.parent.assertEqual(result.start_logits.shape, (self.batch_size, self.seq_length))
        self.parent.assertEqual(result.end_logits.shape, (self.batch_size, self.seq_length))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_for_sequence_classification(
        self, config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels, choice_labels
    ):
        model = self.eval_model(MiniAlbertForSequenceClassification, config)
        result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=sequence_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_labels))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_for_token_classification(
        self, config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels, choice_labels
    ):
        model = self.eval_model(MiniAlbertForTokenClassification, config)
        result = model(input_ids, attention_mask=input_mask, token_type_ids=token_type_ids, labels=token_labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.seq_length, self.num_labels))
        self.parent.assertEqual(result.loss.shape, ())

    def create_and_check_for_multiple_choice(
        self, config, input_ids, token_type_ids, input_mask, sequence_labels, token_labels, choice_labels
    ):
        model = self.eval_model(MiniAlbertForMultipleChoice, config)

        def per_choice(tensor):
            return tensor.unsqueeze(1).expand(-1, self.num_choices, -1).contiguous()

        result = model(
            per_choice(input_ids),
            attention_mask=per_choice(input_mask),
            token_type_ids=per_choice(token_type_ids),
            labels=choice_labels,
        )
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_choices))
        self.parent.assertEqual(result.loss.shape, ())


@require_torch
class MiniAlbertModelTest(ModelTesterMixin, unittest.TestCase):
    """The default layout: BERT-style embeddings, branch-normalised adapters, the decoder tied at width E."""

    layout: dict[str, str] = {}
    all_model_classes = (
        MiniAlbertModel,
        MiniAlbertForMaskedLM,
        MiniAlbertForMultipleChoice,
        MiniAlbertForSequenceClassification,
        MiniAlbertForTokenClassification,
        MiniAlbertForQuestionAnswering,
    )

    def setUp(self):
        self.model_tester = MiniAlbertModelTester(self, self.layout)
        self.config_tester = ConfigTester(
            self, config_class=MiniAlbertConfig, hidden_size=36, num_attention_heads=6, **self.layout
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_masked_lm(self):
        self.model_tester.create_and_check_for_masked_lm(*self.model_tester.prepare_config_and_inputs())

    def test_for_multiple_choice(self):
        self.model_tester.create_and_check_for_multiple_choice(*self.model_tester.prepare_config_and_inputs())

    def test_for_question_answering(self):
        self.model_tester.create_and_check_for_question_answering(*self.model_tester.prepare_config_and_inputs())

    def test_for_sequence_classification(self):
        self.model_tester.create_and_check_for_sequence_classification(*self.model_tester.prepare_config_and_inputs())

    def test_for_token_classification(self):
        self.model_tester.create_and_check_for_token_classification(*self.model_tester.prepare_config_and_inputs())


@require_torch
class MiniAlbertPublishedLayoutModelTest(MiniAlbertModelTest):
    """The published MiniALBERT checkpoints' layout: ALBERT-style embeddings, post-norm adapters, an H-wide
    decoder of its own."""

    layout = PUBLISHED_LAYOUT
