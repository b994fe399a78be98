"""Export a MiniAlbert folder to ONNX: the graphs of every head with dynamic batch and length, and int8 quantisation
(dynamic, and static calibrated QDQ). Running and checking the files (`OnnxRuntimeModel`, `write_export` with its
parity check) is `minialbert.runtimes`'.

The exported folder holds `model.onnx` (and `model_quantized.onnx`, `model_static_quantized.onnx`), the config, its
code files and the tokenizer:
the layout `optimum.onnxruntime.ORTModelFor<Task>.from_pretrained` loads. Exported into a student folder's `onnx/`
(the default), it is also where `SentenceTransformer(student, backend="onnx")` looks. `optimum-onnx` installs
only beside transformers < 4.58, so this module exports with `torch.onnx.export` and quantises with
`onnxruntime.quantization` itself, and `minialbert.runtimes.OnnxRuntimeModel` runs the files under any transformers.

The `minialbert export-onnx` job over these (output folder, `--bench`) is `minialbert.export_job`.
"""

import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from . import modeling_minialbert
from .configuration_minialbert import HEADS, MiniAlbertConfig
from .errors import BadInputError
from .folders import read_minialbert_config, reading_weights
from .modeling_minialbert import (
    MiniAlbertModel,
    MiniAlbertPreTrainedModel,
)

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
QUANTIZED_ONNX_FILE = "model_quantized.onnx"  # the name optimum's ORTQuantizer gives it
STATIC_QUANTIZED_ONNX_FILE = "model_static_quantized.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The exporters and their opsets. TorchScript (the default) traced graphs run faster in ONNX Runtime than the
# dynamo exporter's on this model: `python benchmarks/run.py` measures both (docs/deploy.md, Performance).
EXPORTERS = {"torchscript": 17, "dynamo": 18}
PARITY_TOLERANCE = 1e-4


# `--quantize` choices and the file each writes: dynamic (activations quantised per batch at run time) and static
# QDQ (activation ranges calibrated on sample text).
QUANTIZATIONS = {"int8": QUANTIZED_ONNX_FILE, "int8-static": STATIC_QUANTIZED_ONNX_FILE}
CALIBRATION_TEXTS = 256  # bundled paragraphs the static ranges are calibrated on, by default


class OnnxTask(NamedTuple):
    """One exportable task: the head that computes it, the outputs it names (as optimum's ORTModels read them),
    the output class the runner returns and optimum's class for it."""

    model_class: type[MiniAlbertPreTrainedModel]
    output_names: tuple[str, ...]
    output_class: type[ModelOutput]
    ort_model_class: str


# What each exportable head returns; its task is its `HEADS` pipeline tag.
_ONNX_OUTPUTS = {
    "MiniAlbertModel": (("last_hidden_state",), BaseModelOutput, "ORTModelForFeatureExtraction"),
    "MiniAlbertForMaskedLM": (("logits",), MaskedLMOutput, "ORTModelForMaskedLM"),
    "MiniAlbertForSequenceClassification": (
        ("logits",),
        SequenceClassifierOutput,
        "ORTModelForSequenceClassification",
    ),
    "MiniAlbertForTokenClassification": (("logits",), TokenClassifierOutput, "ORTModelForTokenClassification"),
    "MiniAlbertForQuestionAnswering": (
        ("start_logits", "end_logits"),
        QuestionAnsweringModelOutput,
        "ORTModelForQuestionAnswering",
    ),
}
ONNX_TASKS = {
    HEADS[name].pipeline_tag: OnnxTask(getattr(modeling_minialbert, name), *outputs)
    for name, outputs in _ONNX_OUTPUTS.items()
}


def read_student_config(folder: str | os.PathLike) -> MiniAlbertConfig:
    if not Path(folder).is_dir():
        raise BadInputError(f"{str(folder)!r} is not a folder; pass the folder of a student (minialbert convert).")
    return read_minialbert_config(
        folder,
        repr(str(folder)),
        "pass a folder written by minialbert (convert a BERT checkpoint first with `minialbert convert`).",
    )


def load_encoder(folder: str | os.PathLike, config: MiniAlbertConfig, **kwargs) -> MiniAlbertModel:
    """The encoder of any MiniAlbert folder, in eval mode; a head's folder loads with its head, so that no weight
    goes unused (and none is reported unexpected)."""
    architecture = (config.architectures or ["MiniAlbertModel"])[0]
    model_class = getattr(modeling_minialbert, architecture) if architecture in HEADS else MiniAlbertModel
    with reading_student_weights(folder):
        return model_class.from_pretrained(str(folder), **kwargs).base_model.eval()


def reading_student_weights(folder: str | os.PathLike):
    """`reading_weights` for the student folder a command was given."""
    return reading_weights(repr(str(folder)), "pass a complete student folder (save or copy it again).")


def task_of(config: MiniAlbertConfig, task: str | None) -> str:
    """`task`, checked against what the folder's head can compute; by default the head's own task."""
    architecture = (config.architectures or ["MiniAlbertModel"])[0]
    own_task = HEADS[architecture].pipeline_tag if architecture in HEADS else None
    possible = ["feature-extraction"] + (
        [own_task] if own_task in ONNX_TASKS and own_task != "feature-extraction" else []
    )
    task = task or possible[-1]
    if task not in possible:
        raise BadInputError(
            f"A {architecture} folder exports to {' or '.join(possible)}, not {task!r}; pass --task with one of "
            "those, or export a folder trained for that task."
        )
    return task


class _OnnxSignature(torch.nn.Module):
    """The model as a function of the tokenizer's three tensors, returning a task's outputs as a tuple."""

    def __init__(self, model: MiniAlbertPreTrainedModel, output_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(self, input_ids, attention_mask, token_type_ids):
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(outputs[name] for name in self.output_names)


def example_batches(config: MiniAlbertConfig) -> list[dict[str, torch.Tensor]]:
    """Padded and unpadded batches of several shapes, both token types: the export's tracing input and the
    batches its parity check runs."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for batch_size, length in [(2, 16), (3, 7), (1, 11)]:
        input_ids = torch.randint(0, config.vocab_size, (batch_size, length), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        for row in range(1, batch_size):
            attention_mask[row, length - 2 * row :] = 0
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, length // 2 :] = 1
        batches.append(
            {
                "input_ids": input_ids * attention_mask,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
            }
        )
    return batches


def export_model(
    model: MiniAlbertPreTrainedModel,
    task: str,
    path: str | os.PathLike,
    exporter: str = "torchscript",
    merge_relaxations: bool = True,
) -> None:
    """Write `model` as an ONNX graph for `task` with dynamic batch and sequence axes, weights inside the file and
    its task in the file's metadata. `exporter`: see `EXPORTERS`. `merge_relaxations`: a relaxed student's
    recursions get their own merged weights in the graph (`MiniAlbertEncoder.merge_relaxations`: one matrix multiply
    per linear, int8-quantised like any other, for a larger file) instead of the shared weights plus low-rank pairs;
    benchmarks/run.py measures both."""
    encoder = getattr(model.base_model, "encoder", None)
    merge = merge_relaxations and getattr(encoder, "relaxations", None) is not None and not encoder.relaxations_merged
    if merge:
        encoder.merge_relaxations()
    try:
        # Traced without autograd, as inference runs: under it the relaxations would be merged afresh in the graph.
        with torch.no_grad():
            _export_graph(model, task, path, exporter)
    finally:
        if merge:
            encoder.unmerge_relaxations()


def _export_graph(model: MiniAlbertPreTrainedModel, task: str, path: str | os.PathLike, exporter: str) -> None:
    import onnx

    # eval() on the wrapper too: exporters restore the wrapper's mode, and with it the model's, after tracing.
    signature = _OnnxSignature(model, ONNX_TASKS[task].output_names).eval()
    example = tuple(example_batches(model.config)[0].values())
    names = {"input_names": list(INPUT_NAMES), "output_names": list(ONNX_TASKS[task].output_names)}
    if exporter == "dynamo":
        batch = torch.export.Dim("batch")
        sequence = torch.export.Dim("sequence", max=model.config.max_position_embeddings)
        program = torch.onnx.export(
            signature,
            example,
            dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUT_NAMES},
            opset_version=EXPORTERS[exporter],
            dynamo=True,
            external_data=False,
            verbose=False,
            **names,
        )
        program.save(str(path))
    else:
        axes = {0: "batch", 1: "sequence"}
        with warnings.catch_warnings():
            # Python-level shape arithmetic traced into constants: none of it depends on the batch's values.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                signature,
                example,
                str(path),
                dynamic_axes={name: axes for name in INPUT_NAMES + ONNX_TASKS[task].output_names},
                opset_version=EXPORTERS[exporter],
                dynamo=False,
                **names,
            )
    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {"minialbert_task": task})
    onnx.save(graph, str(path))


# Embedding lookups (Gather) stay fp32: quantising the word-embedding table per tensor cost the fine-tuned topic
# classifier of benchmarks/run.py its 0.99 top-1 agreement with fp32 (docs/deploy.md); it costs file size only.
QUANTIZED_OPS = ["MatMul"]


@contextmanager
def _folded(source: str | os.PathLike):
    """`source` after ONNX Runtime's pre-processing, which folds the weights' transposes into constants; without it
    the shared layer's MatMuls stay fp32."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        folded = Path(scratch) / "folded.onnx"
        quant_pre_process(str(source), str(folded), skip_symbolic_shape=True)
        yield folded


def quantize_int8(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Dynamic int8 quantisation: int8 weights (per output channel) for every MatMul, activations quantised per
    batch at run time."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _folded(source) as folded:
        quantize_dynamic(
            str(folded),
            str(target),
            op_types_to_quantize=QUANTIZED_OPS,
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def quantize_int8_static(
    source: str | os.PathLike, target: str | os.PathLike, tokenizer, texts: list[str], batch_size: int = 16
) -> None:
    """Static QDQ int8: weights per output channel, and activation ranges fixed from a calibration pass over
    `texts` (min-max), so no range is computed at run time and ONNX Runtime fuses each quantise-matmul-dequantise
    into one int8 kernel. MatMuls are quantised; LayerNorm, softmax and GELU stay fp32."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(
                {name: array.astype("int64") for name, array in tokenizer(
                    texts[start : start + batch_size], padding=True, truncation=True, max_length=128,
                    return_tensors="np").items() if name in INPUT_NAMES}
                for start in range(0, len(texts), batch_size)
            )  # fmt: skip

        def get_next(self):
            return next(self.batches, None)

    with _folded(source) as folded:
        quantize_static(
            str(folded),
            str(target),
            Batches(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
