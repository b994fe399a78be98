"""Export a MiniAlbert folder through transformers' own exporters (`transformers.exporters`): an `ExportedModel`
of every head with dynamic batch and length, as an ONNX graph, a `torch.export` program or an OpenVINO model, and
int8 copies of the ONNX graph from the library's ONNX Runtime quantizers. Running and checking the exports
(`OnnxRuntimeModel`, `write_export` with its parity check) is `minialbert.runtimes`'.

An exported folder is what `ExportedModel.save_pretrained` writes (`export.json`, the program, the config) plus the
config's code files and the tokenizer, so `ExportedModel.from_pretrained(folder, trust_remote_code=True)` loads it
without minialbert. An ONNX folder also holds `model_quantized.onnx` and `model_static_quantized.onnx` when asked:
the layout `optimum.onnxruntime.ORTModelFor<Task>.from_pretrained` loads, and exported into a student folder's
`onnx/` (the default), where `SentenceTransformer(student, backend="onnx")` looks.

The `minialbert export` job over these (output folder, `--bench`) is `minialbert.export_job`.
"""

import contextlib
import io
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

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

if TYPE_CHECKING:
    from transformers.exporters import ExportedModel, OnnxRuntimeQuantizer

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"  # what `ExportedModel.save_pretrained` names its one ONNX component
EXPORT_MANIFEST_FILE = "export.json"  # `ExportedModel`'s manifest (transformers.exporters.base.EXPORT_MANIFEST_FILE)
QUANTIZED_ONNX_FILE = "model_quantized.onnx"  # the name optimum's ORTQuantizer gives it
STATIC_QUANTIZED_ONNX_FILE = "model_static_quantized.onnx"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The formats `transformers.exporters` writes that run on a CPU from PyPI packages, and the folder each goes to in a
# student folder by default (`onnx/` is where sentence-transformers' ONNX backend looks).
FORMATS = {"onnx": "onnx", "dynamo": "torch_export", "openvino": "openvino"}
# The ONNX graph builders and their opsets: torch.onnx's TorchScript-based exporter (the default: its graphs run
# faster in ONNX Runtime on this model, quantised or not) or transformers' `OnnxExporter` (torch.export-based).
# `python benchmarks/run.py --section onnx` measures both (docs/deploy.md, Performance).
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
    export_format: str = "onnx",
    exporter: str = "torchscript",
    merge_relaxations: bool = True,
) -> "ExportedModel":
    """`model` exported for `task` with dynamic batch and sequence axes, as a `transformers.exporters.ExportedModel`
    of `export_format` (see `FORMATS`) that returns what the model returns. `exporter`: the ONNX graph's builder
    (see `EXPORTERS`); an ONNX graph records its task in its metadata (`minialbert_task`), where
    `minialbert.runtimes.OnnxRuntimeModel` reads it. `merge_relaxations`: a relaxed student's recursions get their own
    merged weights (`MiniAlbertEncoder.merge_relaxations`: one matrix multiply per linear, int8-quantised like any
    other, for a larger file) instead of the shared weights plus low-rank pairs; benchmarks/run.py measures both."""
    encoder = getattr(model.base_model, "encoder", None)
    merge = merge_relaxations and getattr(encoder, "relaxations", None) is not None and not encoder.relaxations_merged
    if merge:
        encoder.merge_relaxations()
    try:
        # Traced without autograd, as inference runs: under it the relaxations would be merged afresh in the graph.
        with torch.no_grad():
            exported = _export(model, task, export_format, exporter)
    finally:
        if merge:
            encoder.unmerge_relaxations()
    if export_format == "onnx":
        exported.program.metadata_props["minialbert_task"] = task
    return exported


def _export(model: MiniAlbertPreTrainedModel, task: str, export_format: str, exporter: str) -> "ExportedModel":
    from transformers.exporters import (
        DynamoConfig,
        DynamoExporter,
        OnnxConfig,
        OnnxExporter,
        OpenVINOConfig,
        OpenVINOExporter,
    )

    sample = example_batches(model.config)[0]
    if export_format == "onnx" and exporter == "torchscript":
        return _torchscript_export(model, task, sample)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    shapes = {"dynamic_shapes": {name: {0: batch, 1: sequence} for name in INPUT_NAMES}}
    exporter_class, config = {
        "onnx": (OnnxExporter, OnnxConfig(opset_version=EXPORTERS["dynamo"], **shapes)),
        "dynamo": (DynamoExporter, DynamoConfig(**shapes)),
        "openvino": (OpenVINOExporter, OpenVINOConfig(**shapes)),
    }[export_format]
    with _quiet_onnx_exporter():
        return exporter_class().export(model, sample, config)


@contextmanager
def _quiet_onnx_exporter():
    """torch.onnx prints its progress and warns about torchvision ops this model has none of."""
    torch_onnx_logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = torch_onnx_logger.level
    torch_onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
            yield
    finally:
        torch_onnx_logger.setLevel(level)


def _torchscript_export(
    model: MiniAlbertPreTrainedModel, task: str, sample: dict[str, torch.Tensor]
) -> "ExportedModel":
    """The TorchScript exporter's graph as the single ONNX component of an `ExportedModel`, with the metadata
    `OnnxExporter` records: the traced inputs, and the output structure its runner rebuilds the model's output
    from."""
    import onnx_ir
    import transformers
    from transformers.exporters import ExportedComponent, ExportedModel, ExportMetadata
    from transformers.exporters.metadata import record_output_structure

    # eval() on the wrapper too: exporters restore the wrapper's mode, and with it the model's, after tracing.
    names = ONNX_TASKS[task].output_names
    signature = _OnnxSignature(model, names).eval()
    axes = {0: "batch", 1: "sequence"}
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # Python-level shape arithmetic traced into constants: none of it depends on the batch's values.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        path = Path(scratch) / ONNX_FILE
        torch.onnx.export(
            signature,
            tuple(sample.values()),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(names),
            dynamic_axes={name: axes for name in INPUT_NAMES + names},
            opset_version=EXPORTERS["torchscript"],
            dynamo=False,
        )
        program = onnx_ir.load(str(path))
        onnx_ir.external_data.load_to_model(program)
    metadata = ExportMetadata(
        architecture=type(model).__name__,
        packages={"transformers": transformers.__version__, "torch": torch.__version__},
        export_config={"export_format": "onnx", "exporter": "torchscript", "opset_version": EXPORTERS["torchscript"],
                       "dynamic_axes": {name: axes for name in INPUT_NAMES}},
        export_dtype="float32",
        export_device="cpu",
        kwargs={name: {"rank": 2, "shape": list(value.shape), "dtype": "int64"} for name, value in sample.items()},
    )  # fmt: skip
    outputs = model(**sample)
    record_output_structure(metadata, ONNX_TASKS[task].output_class(**{name: outputs[name] for name in names}))
    return ExportedModel({"model": ExportedComponent(program, metadata)}, "onnx", config=model.config)


# Embedding lookups (Gather) stay fp32: quantising the word-embedding table per tensor cost the fine-tuned topic
# classifier of benchmarks/run.py its 0.99 top-1 agreement with fp32 (docs/deploy.md); it costs file size only.
QUANTIZED_OPS = ["MatMul"]


def save_export(exported: "ExportedModel", folder: str | os.PathLike) -> None:
    """`ExportedModel.save_pretrained`, with an ONNX graph's weights moved back into the graph file from the `.data`
    file it writes beside it, which is left empty: optimum's ORTModels (and sentence-transformers' ONNX backend
    through them) fetch external data from the Hub only when it is named `model.onnx_data`, so they cannot run a graph
    whose weights are in `model.onnx.data`; `ExportedModel.from_pretrained` fetches the empty file its manifest names
    and reads the weights from the graph. A student's graph is far below protobuf's 2 GB limit on one file."""
    exported.save_pretrained(folder)
    if str(exported.export_format) == "onnx":
        import onnx_ir

        path = Path(folder) / ONNX_FILE
        program = onnx_ir.load(str(path))
        onnx_ir.external_data.load_to_model(program)
        onnx_ir.save(program, str(path))
        path.with_name(f"{path.name}.data").write_bytes(b"")


def onnxruntime_quantizer(
    quantization: str, calibration: list[dict[str, torch.Tensor]] | None = None
) -> "OnnxRuntimeQuantizer":
    """transformers' `OnnxRuntimeQuantizer` for `quantization` (see `QUANTIZATIONS`): int8 weights per output channel
    for every MatMul, and activations either quantised per batch at run time ("int8") or with ranges calibrated
    (min-max) on the `calibration` batches into static QDQ ("int8-static", which ONNX Runtime fuses into int8
    kernels). LayerNorm, softmax and GELU stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType
    from transformers.exporters import OnnxRuntimeDynamicConfig, OnnxRuntimeQuantizer, OnnxRuntimeStaticConfig

    common = {"op_types_to_quantize": QUANTIZED_OPS, "per_channel": True, "weight_type": QuantType.QInt8}
    if quantization == "int8":
        return OnnxRuntimeQuantizer(
            OnnxRuntimeDynamicConfig(**common, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        )
    config = OnnxRuntimeStaticConfig(**common, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8)
    return OnnxRuntimeQuantizer(config, calibration_dataset=calibration)


def quantize(
    source: str | os.PathLike,
    target: str | os.PathLike,
    quantization: str,
    calibration: list[dict[str, torch.Tensor]] | None = None,
) -> None:
    """Write the int8 copy `quantization` of the ONNX graph `source` (written by `save_export`, its weights inside)
    to `target` with `onnxruntime_quantizer(quantization, calibration)`.

    The graph first goes through ONNX Runtime's pre-processing, which folds the weights' transposes into constants:
    without it the shared layer's MatMuls stay fp32 (the quantizer finds no constant weight to quantise)."""
    import onnx_ir
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from transformers.exporters import ExportFormat

    with tempfile.TemporaryDirectory() as scratch:
        folded = Path(scratch) / "folded.onnx"
        quant_pre_process(str(source), str(folded), skip_symbolic_shape=True)
        program = onnx_ir.load(str(folded))
        onnx_ir.external_data.load_to_model(program)
    quantized = onnxruntime_quantizer(quantization, calibration).quantize(program, {}, ExportFormat.ONNX)
    onnx_ir.save(quantized, str(target))


def calibration_batches(tokenizer, texts: list[str], batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """`texts` as the tokenizer batches static int8 is calibrated on."""
    return [
        {name: tensor for name, tensor in tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
         max_length=128, return_tensors="pt").items() if name in INPUT_NAMES}
        for start in range(0, len(texts), batch_size)
    ]  # fmt: skip
