"""ONNX export: parity with PyTorch for every head, int8 agreement on a real student, the loaders users have
(optimum's ORTModels, transformers pipelines and sentence-transformers' ONNX backend, under transformers 4.57)
and bad input."""

import inspect
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from minialbert import (
    ExportArguments,
    MiniAlbertForMaskedLM,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
    OnnxRuntimeModel,
    export_student,
)
from minialbert.cli import main
from minialbert.convert import ConversionArguments
from minialbert.convert_job import convert_and_save
from minialbert.export import ONNX_TASKS, QUANTIZED_ONNX_FILE

from .conftest import TRANSFORMERS4_PYTHON, entries, requires_transformers4, tiny_config
from .test_modeling_minialbert import randomise

BENCHMARK = runpy.run_path(str(Path(__file__).parent.parent / "benchmarks" / "run.py"))
HEADS = {
    "feature-extraction": MiniAlbertModel,
    "fill-mask": MiniAlbertForMaskedLM,
    "text-classification": MiniAlbertForSequenceClassification,
    "token-classification": MiniAlbertForTokenClassification,
    "question-answering": MiniAlbertForQuestionAnswering,
}


def save_random(folder: Path, model_class, tokenizer, seed: int = 0, **overrides) -> torch.nn.Module:
    config = tiny_config(vocab_size=tokenizer.vocab_size, max_position_embeddings=128, **overrides)
    model = randomise(model_class(config), seed=seed).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def padded_batches(tokenizer) -> list[dict[str, torch.Tensor]]:
    """Real text in batches of different sizes and lengths, padded, one of them sentence pairs."""
    texts = ["Short.", "A sentence of middling length here.", "And a much longer one, " * 6, "Two words"]
    return [
        dict(tokenizer(texts[:2], padding=True, return_tensors="pt")),
        dict(tokenizer(texts, padding=True, return_tensors="pt")),
        dict(tokenizer(texts[1:2], return_tensors="pt")),
        dict(tokenizer(texts[:3], texts[1:], padding=True, return_tensors="pt")),
    ]


@pytest.fixture(scope="module")
def tokenizer(teacher_path):
    return AutoTokenizer.from_pretrained(teacher_path)


@pytest.mark.parametrize(
    "task, overrides, exporter",
    [(task, {"recursion_lora_rank": 2}, "torchscript") for task in HEADS]
    + [
        ("feature-extraction", {"use_adapters": False}, "torchscript"),
        ("text-classification", {"embedding_size": 32}, "torchscript"),
        ("text-classification", {"recursion_lora_rank": 2}, "dynamo"),
        ("question-answering", {"use_adapters": False}, "dynamo"),
    ],
)
def test_onnx_runtime_reproduces_every_head(task, overrides, exporter, tokenizer, tmp_path):
    model = save_random(tmp_path / "model", HEADS[task], tokenizer, **overrides)
    exported = export_student(tmp_path / "model", arguments=ExportArguments(exporter=exporter))
    assert exported == (tmp_path / "model" / "onnx").resolve()
    assert {"model.onnx", "config.json", "tokenizer.json", "modeling_minialbert.py"} <= set(os.listdir(exported))
    runner = OnnxRuntimeModel.from_pretrained(exported)
    assert runner.task == task
    for batch in padded_batches(tokenizer):
        with torch.no_grad():
            expected = model(**batch)
        got = runner(**batch)
        assert type(got) is ONNX_TASKS[task].output_class
        real = batch["attention_mask"].bool()
        for name in ONNX_TASKS[task].output_names:
            assert got[name].shape == expected[name].shape, name
            # Padding positions hold no output anyone reads (PyTorch leaves zeros there).
            want, have = (
                (expected[name], got[name])
                if task == "text-classification"
                else (expected[name][real], got[name][real])
            )
            torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_a_relaxed_student_exports_with_each_recursions_weights_merged_or_as_pairs(exporter, tokenizer, tmp_path):
    """Merged (the default): one MatMul per linear, int8-quantised like any other; pairs: the shared weights plus
    two MatMuls per relaxed linear. Both pass the export's parity check; the model is left unmerged."""
    import onnx

    model = save_random(tmp_path / "model", MiniAlbertModel, tokenizer, recursion_lora_rank=2)
    matmuls = {}
    for merge in (True, False):
        arguments = ExportArguments(exporter=exporter, merge_relaxations=merge, quantize=["int8"])
        exported = export_student(tmp_path / "model", tmp_path / f"onnx-{merge}", arguments)
        graph = onnx.load(str(exported / QUANTIZED_ONNX_FILE)).graph
        matmuls[merge] = sum(node.op_type in ("MatMul", "MatMulInteger", "Gemm") for node in graph.node)
        runner = OnnxRuntimeModel.from_pretrained(exported, QUANTIZED_ONNX_FILE)
        batch = padded_batches(tokenizer)[1]
        real = batch["attention_mask"].bool()
        with torch.no_grad():
            expected = model(**batch).last_hidden_state[real]
        assert torch.nn.functional.cosine_similarity(runner(**batch).last_hidden_state[real], expected).min() > 0.99
    # 3 recursions x 6 relaxed linears, each one MatMul instead of three (QKV merged into one where they are).
    assert matmuls[False] - matmuls[True] >= 3 * 6 * 2 - 3 * 2, matmuls
    assert not model.encoder.relaxations_merged


def test_cli_exports_and_refuses_bad_input_without_writing(tokenizer, tiny_bert_path, tmp_path, capsys):
    save_random(tmp_path / "masked", MiniAlbertForMaskedLM, tokenizer)
    command = [sys.executable, "-m", "minialbert.cli", "export"]

    result = subprocess.run(command + [str(tmp_path / "masked"), "--quantize", "int8"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"model.onnx", QUANTIZED_ONNX_FILE} <= set(os.listdir(tmp_path / "masked" / "onnx"))
    assert OnnxRuntimeModel.from_pretrained(tmp_path / "masked" / "onnx").task == "fill-mask"

    refused = {
        "holds a 'bert' model, not a MiniAlbert one": [str(tiny_bert_path), "--output_dir", str(tmp_path / "out")],
        "exports to feature-extraction or fill-mask, not 'text-classification'": [
            str(tmp_path / "masked"), "--task", "text-classification", "--output_dir", str(tmp_path / "out"),
        ],
        "is not empty": [str(tmp_path / "masked")],
    }  # fmt: skip
    for message, arguments in refused.items():  # in this process: the command's own error handling
        assert main(["export", *arguments]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert [name for name in entries(tmp_path) if name.startswith(".")] == []


def test_a_failed_check_writes_nothing_and_keeps_the_old_export(tokenizer, tmp_path, monkeypatch):
    import minialbert.export

    save_random(tmp_path / "model", MiniAlbertModel, tokenizer)
    first = export_student(tmp_path / "model")
    before = (first / "model.onnx").read_bytes()
    monkeypatch.setattr(minialbert.export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(RuntimeError, match="differs from the PyTorch model"):
        export_student(tmp_path / "model", overwrite=True)
    assert (first / "model.onnx").read_bytes() == before
    assert [name for name in entries(tmp_path / "model") if name.startswith(".")] == []


TRANSFORMERS4_CHECK = r"""
import sys

sys.modules["minialbert"] = None
import numpy as np
import torch
from optimum.onnxruntime import (
    ORTModelForFeatureExtraction,
    ORTModelForMaskedLM,
    ORTModelForQuestionAnswering,
    ORTModelForSequenceClassification,
    ORTModelForTokenClassification,
)
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer, pipeline

root, sentence_student = sys.argv[1:]
ort_classes = {
    "feature-extraction": ORTModelForFeatureExtraction,
    "fill-mask": ORTModelForMaskedLM,
    "text-classification": ORTModelForSequenceClassification,
    "token-classification": ORTModelForTokenClassification,
    "question-answering": ORTModelForQuestionAnswering,
}
texts = ["The cat sat on the mat.", "A longer sentence, so that the batch is padded."]
for task, ort_class in ort_classes.items():
    folder = f"{root}/{task}/onnx"
    expected = torch.load(f"{root}/{task}/expected.pt")
    model = ort_class.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    outputs = model(**batch)
    real = batch["attention_mask"].bool()
    for name, want in expected.items():
        got = torch.as_tensor(outputs[name])
        if task != "text-classification":
            got, want = got[real], want[real]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"{task} {name}")
    if task != "question-answering":
        runner = pipeline(task, model=model, tokenizer=tokenizer)
        text = texts[0].replace("mat", tokenizer.mask_token) if task == "fill-mask" else texts[0]
        assert runner(text), task
    print("optimum", task)

embedder = SentenceTransformer(sentence_student, backend="onnx", trust_remote_code=True)
reference = SentenceTransformer(sentence_student, trust_remote_code=True)
np.testing.assert_allclose(embedder.encode(texts), reference.encode(texts), rtol=1e-4, atol=1e-5)
print("sentence-transformers onnx")
"""


@requires_transformers4
def test_exports_load_in_optimum_pipelines_and_sentence_transformers(tokenizer, tiny_bert_path, tmp_path):
    from minialbert.sentence_embeddings import SentenceModules, save_sentence_modules

    texts = ["The cat sat on the mat.", "A longer sentence, so that the batch is padded."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    for seed, (task, model_class) in enumerate(HEADS.items()):
        model = save_random(tmp_path / task, model_class, tokenizer, seed=seed, recursion_lora_rank=2)
        export_student(tmp_path / task)
        with torch.no_grad():
            outputs = model(**batch)
        torch.save({name: outputs[name] for name in ONNX_TASKS[task].output_names}, tmp_path / task / "expected.pt")

    sentence_student = tmp_path / "sentence-student"
    convert_and_save(tiny_bert_path, sentence_student, ConversionArguments(embedding_size=16))
    config = json.loads((sentence_student / "config.json").read_text())
    save_sentence_modules(
        SentenceModules("mean", normalize=True, max_seq_length=64), sentence_student, config["hidden_size"]
    )
    export_student(sentence_student, arguments=ExportArguments(task="feature-extraction"))

    result = subprocess.run(
        [
            TRANSFORMERS4_PYTHON,
            "-c",
            TRANSFORMERS4_CHECK,
            str(tmp_path),
            str(sentence_student),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "sentence-transformers onnx" in result.stdout


def test_the_runner_docstring_example_runs(tokenizer, tmp_path, capsys):
    save_random(tmp_path / "student", MiniAlbertModel, tokenizer)
    exported = export_student(tmp_path / "student")
    example = re.search(r"```python\n(.*?)```", inspect.cleandoc(OnnxRuntimeModel.__doc__), re.S).group(1)
    assert '"outputs/student/onnx"' in example
    exec(example.replace('"outputs/student/onnx"', repr(str(exported))), {})
    assert re.search(r"torch\.Size\(\[1, \d+, 32\]\)", capsys.readouterr().out)


def test_an_elastic_depth_export_runs_the_first_recursions_only(tokenizer, tmp_path):
    save_random(tmp_path / "model", MiniAlbertModel, tokenizer, recursion_lora_rank=2)
    exported = export_student(tmp_path / "model", tmp_path / "onnx-2", ExportArguments(num_recursions=2))
    assert AutoConfig.from_pretrained(exported).num_recursions == 2
    shallow = MiniAlbertModel.from_pretrained(tmp_path / "model", num_recursions=2).eval()
    full = MiniAlbertModel.from_pretrained(tmp_path / "model").eval()
    runner = OnnxRuntimeModel.from_pretrained(exported)
    for batch in padded_batches(tokenizer):
        real = batch["attention_mask"].bool()
        got = runner(**batch).last_hidden_state[real]
        with torch.no_grad():
            torch.testing.assert_close(got, shallow(**batch).last_hidden_state[real], rtol=1e-4, atol=1e-4)
            assert (got - full(**batch).last_hidden_state[real]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="more than the 3 recursions this model holds weights for"):
        export_student(tmp_path / "model", tmp_path / "onnx-4", ExportArguments(num_recursions=4))
    assert not (tmp_path / "onnx-4").exists()
