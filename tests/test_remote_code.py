"""The uploaded code in the clients users reach it with: pipelines, gradient checkpointing, torch.compile,
torch.export and a padded batch without a mask, under this environment's transformers 5 and, with
`MINIALBERT_TRANSFORMERS4_PYTHON` set (as `.ci/run` does), under transformers 4.57. Every check runs in a process
where `import minialbert` fails."""

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from minialbert import (
    MiniAlbertForMaskedLM,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
)

from .conftest import TRANSFORMERS4_PYTHON, requires_transformers4, tiny_config
from .test_modeling_minialbert import PUBLISHED_LAYOUT, randomise

CLIENTS = Path(__file__).with_name("remote_code_clients.py")
HEADS = {
    "model": MiniAlbertModel,
    "fill-mask": MiniAlbertForMaskedLM,
    "text-classification": MiniAlbertForSequenceClassification,
    "token-classification": MiniAlbertForTokenClassification,
    "question-answering": MiniAlbertForQuestionAnswering,
}
PYTHONS = [
    pytest.param(sys.executable, id="transformers5"),
    pytest.param(TRANSFORMERS4_PYTHON, id="transformers4", marks=requires_transformers4),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, teacher_path) -> Path:
    """One saved model per pipeline task, with adapters and relaxation, random non-trivial weights and the
    bundled teacher's tokenizer; the encoder and the masked LM in the published checkpoints' layout (as
    `minialbert import-published` writes it), the others in the default one."""
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    root = tmp_path_factory.mktemp("remote-code")
    for seed, (task, model_class) in enumerate(HEADS.items()):
        layout = PUBLISHED_LAYOUT if task in ("model", "fill-mask") else {}
        config = tiny_config(
            vocab_size=tokenizer.vocab_size, max_position_embeddings=128, recursion_lora_rank=2, **layout
        )
        model = randomise(model_class(config), seed=seed)
        model.save_pretrained(root / task)
        tokenizer.save_pretrained(root / task)
    return root


@pytest.mark.parametrize("python", PYTHONS)
def test_uploaded_code_in_real_clients(python, folders, tmp_path):
    """Pipelines, gradient checkpointing, torch.compile, torch.export and a batch without a mask, in one process per
    transformers."""
    result = subprocess.run(
        [python, str(CLIENTS), str(folders)], capture_output=True, text=True, cwd=tmp_path, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    for check in ("pipelines", "gradient-checkpointing", "compile", "export", "no-mask"):
        assert f"{check} ok" in result.stdout
