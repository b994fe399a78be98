"""`minialbert export --format onnx|dynamo|openvino`: every head in every format is an `ExportedModel` that
transformers loads and runs without minialbert, and the formats' own bad input."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoTokenizer

from minialbert.cli import main
from minialbert.export import FORMATS, ONNX_TASKS

from .test_export import HEADS, MiniAlbertModel, save_random


@pytest.fixture(scope="module")
def tokenizer(teacher_path):
    return AutoTokenizer.from_pretrained(teacher_path)


EXPORTED_MODEL_CHECK = r"""
import sys

sys.modules["minialbert"] = None  # what `minialbert export` wrote loads with transformers alone
import torch
from transformers import AutoTokenizer
from transformers.exporters import ExportedModel

texts = ["The cat sat on the mat.", "A longer sentence, so that the batch is padded.", "Three rows this time."]
for folder in sys.argv[1:]:
    expected = torch.load(f"{folder}/../expected.pt")
    options = {"config": {"INFERENCE_PRECISION_HINT": "f32"}} if "openvino" in folder else {}
    model = ExportedModel.from_pretrained(folder, trust_remote_code=True, **options)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    batch = tokenizer(texts, padding=True, return_tensors="pt")  # another batch size and length than the trace's
    outputs = model(**batch)
    assert type(outputs).__name__ == expected.pop("class"), (folder, type(outputs))
    assert type(model.config).__module__.startswith("transformers_modules."), type(model.config)
    real = batch["attention_mask"].bool()
    for name, want in expected.items():
        got = outputs[name]
        if want.dim() > 2 or "token" in folder or "fill" in folder or "question" in folder:
            got, want = got[real], want[real]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"{folder} {name}")
    print("loaded", folder)
"""


@pytest.mark.parametrize("export_format", ["onnx", "dynamo", "openvino"])
def test_every_head_exports_in_each_format_and_loads_without_minialbert(export_format, tokenizer, tmp_path):
    """`minialbert export --format F` for each head, then `ExportedModel.from_pretrained` in a fresh process in
    which `import minialbert` fails, on a padded batch of another size and length than the export traced."""
    texts = ["The cat sat on the mat.", "A longer sentence, so that the batch is padded.", "Three rows this time."]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    exported = []
    for seed, (task, model_class) in enumerate(HEADS.items()):
        model = save_random(tmp_path / task, model_class, tokenizer, seed=seed, recursion_lora_rank=2)
        assert main(["export", str(tmp_path / task), "--format", export_format]) == 0
        folder = tmp_path / task / FORMATS[export_format]
        assert {"export.json", "config.json", "tokenizer.json", "configuration_minialbert.py"} <= set(
            os.listdir(folder)
        )
        manifest = json.loads((folder / "export.json").read_text())
        assert manifest["export_format"] == export_format and list(manifest["components"]) == ["model"]
        with torch.no_grad():
            outputs = model(**batch)
        expected = {name: outputs[name] for name in ONNX_TASKS[task].output_names}
        torch.save(expected | {"class": type(outputs).__name__}, tmp_path / task / "expected.pt")
        exported.append(str(folder))
    result = subprocess.run(
        [sys.executable, "-c", EXPORTED_MODEL_CHECK, *exported], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("loaded") == len(HEADS)


def test_other_formats_refuse_int8_and_a_missing_runtime_is_one_line(tokenizer, tmp_path, capsys, monkeypatch):
    save_random(tmp_path / "model", MiniAlbertModel, tokenizer)
    before = sorted(os.listdir(tmp_path / "model"))
    assert main(["export", str(tmp_path / "model"), "--format", "dynamo", "--quantize", "int8"]) == 2
    assert "--quantize makes int8 copies of an ONNX graph: pass --format onnx, not dynamo." in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "openvino", None)  # as without the openvino extra
    assert main(["export", str(tmp_path / "model"), "--format", "openvino"]) == 2
    assert "Exporting to openvino needs openvino: pip install 'minialbert[openvino]'" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "model")) == before
