"""Stand-in for transformers' `tests/utils/test_configuration_utils.py`, which the sdist does not ship: the one name
`ConfigTester.check_config_arguments_init` imports from it, with transformers 5's values (non-default values of the
arguments every config accepts)."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
