import functools
import importlib.util
import json
import re

import onnx as onnx_format
import pytest
import torch

from minialbert import MiniAlbertModel, OnnxRuntimeModel, export_student, fastest_runtime
from minialbert.cli import main
from minialbert.convert import ConversionArguments
from minialbert.convert_job import convert_and_save
from minialbert.devices import cpu_has_native_bf16
from minialbert.export import ONNX_FILE, QUANTIZED_ONNX_FILE, STATIC_QUANTIZED_ONNX_FILE
from minialbert.export_job import ExportArguments, calibration_texts
from minialbert.runtimes import PATHS, RUNTIME_REPORT_FILE, length_groups

from .test_export import HEADS, save_random, tokenizer  # noqa: F401  (a fixture)

TEXTS = [
    "Short.",
    "A sentence of middling length here.",
    "And a much longer one, " * 6,
    "Two words",
    "The shares rose after the results were announced on Tuesday.",
    "Rain is expected across the north tomorrow.",
]


def test_every_path_agrees_with_pytorch_fp32_on_the_real_converted_teacher(teacher_path, tmp_path):
    """Parity of each path against PyTorch fp32 on bundled text, through the exports `fastest_runtime` makes:
    fp32 paths (ONNX Runtime, OpenVINO, the torch.export program) within 1e-4, bf16 and both int8s at an agreement
    of at least 0.99; the winner is the fastest of those that agree (whatever the timings were)."""
    # From the weights alone: the frequency-weighted embeddings of the calibrated start leave an untrained student
    # whose dynamic int8 agreement is 0.955 (outlier activations); a distilled student's is 1.000 (docs/deploy.md).
    student = convert_and_save(teacher_path, tmp_path / "student", ConversionArguments(calibration_samples=0))
    texts = calibration_texts(None)[:48]
    onnx = export_student(student, tmp_path / "onnx", ExportArguments(task="feature-extraction", num_recursions=2,
                                                                   quantize=["int8", "int8-static"]))  # fmt: skip
    for quantized in (QUANTIZED_ONNX_FILE, STATIC_QUANTIZED_ONNX_FILE):  # every matmul int8, the shared layer's too
        graph = onnx_format.load(str(onnx / quantized)).graph
        float_weights = {
            tensor.name for tensor in graph.initializer if tensor.data_type == onnx_format.TensorProto.FLOAT
        }
        matmuls = [node for node in graph.node if node.op_type in ("MatMul", "MatMulInteger")]
        assert matmuls and not any(name in float_weights for node in matmuls for name in node.input)
        fp32_bytes = sum((onnx / name).stat().st_size for name in (ONNX_FILE, f"{ONNX_FILE}.data"))
        assert (onnx / quantized).stat().st_size < 0.8 * fp32_bytes
    report = fastest_runtime(student, texts, repeats=1, onnx_folder=onnx, num_recursions=2)
    measured = {measurement.path: measurement for measurement in report.measurements}
    bf16 = ["pytorch-bf16", "openvino-bf16"] if cpu_has_native_bf16() else []
    fp32 = ["onnxruntime-fp32", "openvino-fp32", "torch-export"]
    assert set(measured) == {"pytorch-fp32", *bf16, *fp32, "onnxruntime-int8", "onnxruntime-int8-static"}
    assert set(report.skipped) == set(PATHS) - set(measured)
    for path in fp32:
        assert measured[path].max_difference <= 1e-4, measured[path]
    for path in ("onnxruntime-int8", "onnxruntime-int8-static", *bf16):
        assert measured[path].agreement >= 0.99, measured[path]
        assert 1e-4 < measured[path].max_difference < 2.0, measured[path]
    qualified = [m for m in report.measurements if m.agreement >= 0.99]
    assert report.winner == max(qualified, key=lambda m: m.tokens_per_second).path
    assert report.num_recursions == 2 and report.texts == 48 and report.batch_size == 32
    assert f"**{report.winner}**" in report.table() and json.loads(json.dumps(report.to_dict()))["winner"]


def test_the_docstring_example_runs(teacher_path, tmp_path, monkeypatch, capsys):
    import minialbert.runtimes

    convert_and_save(teacher_path, tmp_path / "outputs" / "student", ConversionArguments(num_recursions=1))
    monkeypatch.chdir(tmp_path)
    # The example as written, timing one path once.
    monkeypatch.setattr(minialbert, "fastest_runtime", functools.partial(fastest_runtime, paths=["pytorch-fp32"],
                                                                          repeats=1))  # fmt: skip
    exec(minialbert.runtimes.__doc__.split("```python")[1].split("```")[0], {})
    assert capsys.readouterr().out.startswith("pytorch-fp32\n| path | tokens/s |")


def test_bench_and_export_bench_write_the_report_and_refuse_bad_input(tokenizer, tmp_path, capsys, monkeypatch):  # noqa: F811
    save_random(tmp_path / "student", MiniAlbertModel, tokenizer)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS))
    arguments = ExportArguments(task="feature-extraction", quantize=["int8"], calibration_file=str(texts), bench=True)
    onnx = export_student(tmp_path / "student", arguments=arguments)
    report = json.loads((onnx / RUNTIME_REPORT_FILE).read_text())
    assert report["winner"] in {m["path"] for m in report["measurements"]}
    assert "onnxruntime-int8-static" in report["skipped"] and report["texts"] == len(TEXTS)

    command = ["bench", str(tmp_path / "student"), "--sample_file", str(texts), "--repeats", "1"]
    assert main([*command, "--onnx_folder", str(onnx), "--output_file", str(tmp_path / "bench.json")]) == 0
    assert "| path | tokens/s | vs PyTorch fp32 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "bench.json").read_text())["real_tokens"] == report["real_tokens"]

    (tmp_path / "two.txt").write_text("One.\nTwo.\n")
    refused = {
        "--sample_file '" + str(tmp_path / "two.txt") + "' holds 2 text(s); pass at least 3": [
            "--sample_file", str(tmp_path / "two.txt")],
        "holds no model_static_quantized.onnx, which onnxruntime-int8-static need(s)": [
            "--onnx_folder", str(onnx), "--paths", "onnxruntime-int8-static"],
        f"{onnx} runs 3 recursions, not 2; export it with `minialbert export": [
            "--onnx_folder", str(onnx), "--num_recursions", "2"],
        "`num_recursions` 4 is more than the 3 recursions": ["--num_recursions", "4"],
        "has no config.json; pass a folder written by minialbert": [],
    }  # fmt: skip
    for message, options in refused.items():
        folder = str(tmp_path) if "config.json" in message else str(tmp_path / "student")
        assert main(["bench", folder, "--sample_file", str(texts), *options]) == 2
        assert message in capsys.readouterr().err, message
    for texts_given in ([], ["only one"], "a string"):
        with pytest.raises(ValueError, match="agreement ranks pairs of texts, so pass a list of at least 3"):
            fastest_runtime(tmp_path / "student", texts_given)
    with pytest.raises(ValueError, match=r"Unknown runtime path\(s\) \['tensorrt'\]"):
        fastest_runtime(tmp_path / "student", TEXTS, paths=["tensorrt"])
    with pytest.raises(ValueError, match="--bench times the encoder: export with --task feature-extraction"):
        ExportArguments(bench=True)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "openvino" else find_spec(name, *rest)
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "openvino-fp32 cannot run here: OpenVINO is not installed: pip install 'minialbert[openvino]'"
        ),
    ):
        fastest_runtime(tmp_path / "student", TEXTS, paths=["openvino-fp32"])


def test_length_groups_cover_every_row_once_and_bound_the_padding():
    lengths = torch.tensor([5, 40, 7, 38, 6, 100, 9, 41])
    mask = (torch.arange(100)[None, :] < lengths[:, None]).long()
    groups = length_groups(mask)
    rows = torch.cat([group for group, _ in groups])
    assert sorted(rows.tolist()) == list(range(8))
    for group, length in groups:
        assert length == int(lengths[group].max())
        assert length <= max(1.3 * int(lengths[group].min()), int(lengths[group].min()) + 8)
    assert len(groups) == 3
    assert length_groups(torch.ones(3, 7, dtype=torch.long)) is None  # no padding
    assert length_groups(torch.tensor([[1, 1, 0], [0, 0, 0]])) is None  # an empty row
    left_padded = mask.flip(-1)
    assert length_groups(left_padded) is None


def test_the_runner_strips_padding_per_length_group_with_the_same_outputs(tokenizer, tmp_path):  # noqa: F811
    for model_class, task in [(MiniAlbertModel, "feature-extraction"), (None, "text-classification")]:
        model = save_random(tmp_path / task, model_class or HEADS[task], tokenizer)
        runner = OnnxRuntimeModel.from_pretrained(export_student(tmp_path / task))
        calls = []
        run = runner.session.run
        runner.session.run = lambda names, feed, calls=calls, run=run: (
            calls.append(feed["input_ids"].shape) or run(names, feed)
        )
        texts = TEXTS * 3
        batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
        got = runner(**batch)
        assert len(calls) == len(length_groups(batch["attention_mask"])) > 1
        assert sum(shape[0] * shape[1] for shape in calls) < batch["input_ids"].numel() * 0.6
        with torch.no_grad():
            expected = model(**batch)
        name = "logits" if task == "text-classification" else "last_hidden_state"
        real = batch["attention_mask"].bool()
        if task == "feature-extraction":
            torch.testing.assert_close(got[name][real], expected[name][real], rtol=1e-4, atol=1e-4)
            assert not got[name][~real].any()  # zeros at padding, like PyTorch
        else:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-4)
