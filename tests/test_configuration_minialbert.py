import json

import pytest
from transformers import AutoConfig

from minialbert import MiniAlbertConfig
from minialbert.configuration_minialbert import AUTO_MAP, HEADS, head_of


def test_defaults_match_the_paper_student():
    config = MiniAlbertConfig()
    assert (config.embedding_size, config.hidden_size, config.intermediate_size) == (128, 768, 3072)
    assert config.num_hidden_layers == 6
    assert config.use_adapters and config.adapter_reduction_factor == 16
    assert config.recursion_lora_rank == 0
    assert config.tie_word_embeddings


def test_round_trip_through_json(tmp_path):
    config = MiniAlbertConfig(
        embedding_size=64,
        recursion_lora_rank=8,
        use_adapters=False,
        num_labels=4,
        num_hidden_layers=3,
        teacher_name_or_path="google-bert/bert-base-uncased",
        teacher_layer_map=[4, 8, 12],
        conversion_init="average",
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "minialbert"
    assert saved["auto_map"] == AUTO_MAP
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, MiniAlbertConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.teacher_layer_map == [4, 8, 12]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "`hidden_size` (30) must be divisible"),
        ({"embedding_size": 0}, "`embedding_size` must be a positive integer"),
        ({"vocab_size": -3}, "`vocab_size` must be a positive integer"),
        ({"num_hidden_layers": 2.5}, "`num_hidden_layers` must be a positive integer"),
        ({"intermediate_size": True}, "`intermediate_size` must be a positive integer"),
        ({"hidden_act": "swishy"}, "`hidden_act` must be one of"),
        ({"hidden_dropout_prob": 1.5}, "`hidden_dropout_prob` must be a probability"),
        ({"classifier_dropout": -0.1}, "`classifier_dropout` must be a probability"),
        ({"recursion_lora_rank": -1}, "`recursion_lora_rank` must be between 0"),
        ({"recursion_lora_rank": 769}, "`recursion_lora_rank` must be between 0"),
        ({"adapter_reduction_factor": 1000}, "`adapter_reduction_factor` (1000) leaves no adapter width"),
        ({"layer_norm_eps": 0.0}, "`layer_norm_eps` must be positive"),
        ({"pad_token_id": 30522}, "`pad_token_id` must be in"),
        ({"bos_token_id": -1}, "`bos_token_id` must be in [0, 30522) or None, got -1"),
        ({"mlm_decoder": "untied", "tie_word_embeddings": True}, "`tie_word_embeddings=True` needs the E-wide"),
        ({"embedding_layout": "roberta"}, "`embedding_layout` must be one of bert, albert, got 'roberta'"),
        ({"adapter_layout": "pre_norm"}, "`adapter_layout` must be one of branch_norm, post_norm"),
        ({"mlm_decoder": "shared"}, "`mlm_decoder` must be one of tied, untied"),
        ({"teacher_layer_map": [2, 4]}, "`teacher_layer_map` must list one 1-based teacher layer per recursion (6)"),
        ({"num_hidden_layers": 2, "teacher_layer_map": [0, 4]}, "`teacher_layer_map` must list one"),
    ],
)
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ValueError) as error:
        MiniAlbertConfig(**overrides)
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "tied"),
    [({}, True), ({"tie_word_embeddings": False}, False), ({"mlm_decoder": "untied"}, False)],
)
def test_tie_word_embeddings_defaults_to_the_decoder_layout_and_round_trips(tmp_path, overrides, tied):
    """The E-wide decoder shares the word embeddings unless told not to (ALBERT's `tie_word_embeddings=False`);
    whatever a config says, it saves, and what it saves loads back to the same config."""
    config = MiniAlbertConfig(**overrides)
    assert config.tie_word_embeddings is tied
    config.save_pretrained(tmp_path)
    loaded = MiniAlbertConfig.from_pretrained(tmp_path)
    assert loaded.tie_word_embeddings is tied
    assert loaded.to_dict() == config.to_dict()


def test_special_token_ids_are_declared_for_transformers_5():
    """transformers 5 dropped `bos_token_id`/`eos_token_id` from the base config; the model's padding warning reads
    them, so the config declares them as BertConfig does."""
    config = MiniAlbertConfig(bos_token_id=2, eos_token_id=3)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 2, 3)
    assert MiniAlbertConfig().bos_token_id is None and MiniAlbertConfig().eos_token_id is None


def test_unknown_activation_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="'gelu'"):
        MiniAlbertConfig(hidden_act="nope")


def test_adapter_factor_is_free_when_adapters_are_off():
    assert MiniAlbertConfig(use_adapters=False, adapter_reduction_factor=1000).adapter_reduction_factor == 1000


def test_one_table_of_heads_gives_the_auto_map_and_a_clear_error_for_unknown_heads():
    assert AUTO_MAP["AutoConfig"] == "configuration_minialbert.MiniAlbertConfig"
    assert {target.split(".")[1] for name, target in AUTO_MAP.items() if name != "AutoConfig"} == set(HEADS)
    assert head_of("MiniAlbertForTokenClassification").pipeline_tag == "token-classification"
    with pytest.raises(ValueError, match="Unknown MiniAlbert head 'BertModel'; the heads are MiniAlbertModel, "):
        head_of("BertModel")
