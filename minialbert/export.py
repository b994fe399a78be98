"""Deploy a MiniAlbert folder: ONNX export with a parity check, dynamic int8 quantisation, and an ONNX Runtime runner.

The exported folder holds `model.onnx` (and `model_quantized.onnx`), the config, its code files and the tokenizer:
the layout `optimum.onnxruntime.ORTModelFor<Task>.from_pretrained` loads. Exported into a student folder's `onnx/`
(the default), it is also where `SentenceTransformer(student, backend="onnx")` looks. `optimum-onnx` installs
only beside transformers < 4.58, so this module exports with `torch.onnx.export` and quantises with
`onnxruntime.quantization` itself, and `OnnxRuntimeModel` runs the files under any transformers.
"""

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import AutoTokenizer
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from . import modeling_minialbert
from .configuration_minialbert import HEADS, MiniAlbertConfig, check_num_recursions
from .folders import read_minialbert_config, write_folder
from .modeling_minialbert import (
    MiniAlbertForMaskedLM,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
    MiniAlbertPreTrainedModel,
)

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
QUANTIZED_ONNX_FILE = "model_quantized.onnx"  # the name optimum's ORTQuantizer gives it
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The exporters and their opsets. TorchScript (the default) traced graphs run faster in ONNX Runtime than the
# dynamo exporter's on this model: `python benchmarks/run.py` measures both (README, Performance).
EXPORTERS = {"torchscript": 17, "dynamo": 18}
PARITY_TOLERANCE = 1e-4


class OnnxTask(NamedTuple):
    """One exportable task: the head that computes it, the outputs it names (as optimum's ORTModels read them),
    the output class the runner returns and optimum's class for it."""

    model_class: type[MiniAlbertPreTrainedModel]
    output_names: tuple[str, ...]
    output_class: type[ModelOutput]
    ort_model_class: str


ONNX_TASKS = {
    "feature-extraction": OnnxTask(
        MiniAlbertModel, ("last_hidden_state",), BaseModelOutput, "ORTModelForFeatureExtraction"
    ),
    "fill-mask": OnnxTask(MiniAlbertForMaskedLM, ("logits",), MaskedLMOutput, "ORTModelForMaskedLM"),
    "text-classification": OnnxTask(
        MiniAlbertForSequenceClassification, ("logits",), SequenceClassifierOutput, "ORTModelForSequenceClassification"
    ),
    "token-classification": OnnxTask(
        MiniAlbertForTokenClassification, ("logits",), TokenClassifierOutput, "ORTModelForTokenClassification"
    ),
    "question-answering": OnnxTask(
        MiniAlbertForQuestionAnswering,
        ("start_logits", "end_logits"),
        QuestionAnsweringModelOutput,
        "ORTModelForQuestionAnswering",
    ),
}


@dataclass
class ExportArguments:
    task: str | None = field(
        default=None,
        metadata={
            "help": "What the exported model computes: the folder's own head task (the default) or "
            "feature-extraction (the encoder of any head).",
            "choices": list(ONNX_TASKS),
        },
    )
    exporter: str = field(
        default="torchscript",
        metadata={
            "help": "torch.onnx's TorchScript-based exporter (faster graphs here, measured in benchmarks/run.py) "
            "or its torch.export-based one.",
            "choices": list(EXPORTERS),
        },
    )
    num_recursions: int | None = field(
        default=None,
        metadata={
            "help": "Elastic depth: export a graph that runs only the first N of the student's recursions (faster, "
            "shallower; see `minialbert bench` for what each depth costs in agreement). Default: all."
        },
    )
    quantize: str | None = field(
        default=None,
        metadata={
            "help": "Also write model_quantized.onnx, dynamically quantised (int8 weights, activations quantised "
            "at run time) with onnxruntime.quantization.",
            "choices": ["int8"],
        },
    )


def read_student_config(folder: str | os.PathLike) -> MiniAlbertConfig:
    if not Path(folder).is_dir():
        raise ValueError(f"{str(folder)!r} is not a folder; pass the folder of a student (minialbert convert).")
    return read_minialbert_config(
        folder,
        repr(str(folder)),
        "pass a folder written by minialbert (convert a BERT checkpoint first with `minialbert convert`).",
    )


def task_of(config: MiniAlbertConfig, task: str | None) -> str:
    """`task`, checked against what the folder's head can compute; by default the head's own task."""
    architecture = (config.architectures or ["MiniAlbertModel"])[0]
    own_task = HEADS[architecture].pipeline_tag if architecture in HEADS else None
    possible = ["feature-extraction"] + (
        [own_task] if own_task in ONNX_TASKS and own_task != "feature-extraction" else []
    )
    task = task or possible[-1]
    if task not in possible:
        raise ValueError(
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
    model: MiniAlbertPreTrainedModel, task: str, path: str | os.PathLike, exporter: str = "torchscript"
) -> None:
    """Write `model` as an ONNX graph for `task` with dynamic batch and sequence axes, weights inside the file and
    its task in the file's metadata. `exporter`: see `EXPORTERS`."""
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


def quantize_int8(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Dynamic int8 quantisation: int8 weights (per output channel) for every MatMul and Gather, activations
    quantised per batch at run time. ONNX Runtime's pre-processing first folds the weights' transposes into
    constants, without which the shared layer's MatMuls stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as scratch:
        folded = Path(scratch) / "folded.onnx"
        quant_pre_process(str(source), str(folded), skip_symbolic_shape=True)
        quantize_dynamic(
            str(folded),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def max_difference(model: MiniAlbertPreTrainedModel, onnx_model: "OnnxRuntimeModel", task: str) -> float:
    """Largest absolute difference between the PyTorch and ONNX Runtime outputs, over the real tokens of padded
    batches of several shapes (padding positions are not outputs anyone reads)."""
    worst = 0.0
    for batch in example_batches(model.config):
        with torch.no_grad():
            expected = model(**batch)
        got = onnx_model(**batch)
        for name in ONNX_TASKS[task].output_names:
            difference = (got[name] - expected[name]).abs()
            if task != "text-classification":  # per-token outputs
                difference = difference[batch["attention_mask"].bool()]
            worst = max(worst, float(difference.max()))
    return worst


def export_onnx(
    folder: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    arguments: ExportArguments | None = None,
    overwrite: bool = False,
) -> Path:
    """Export the MiniAlbert in `folder` to ONNX (and optionally int8) in `output_dir` (default `folder/onnx`).

    The export is checked before it is written: ONNX Runtime must reproduce the PyTorch outputs within 1e-4 on
    padded batches of several shapes. The folder appears complete or not at all.
    """
    arguments = arguments or ExportArguments()
    config = read_student_config(folder)
    task = task_of(config, arguments.task)
    check_num_recursions(arguments.num_recursions, config.num_hidden_layers)
    depth = {} if arguments.num_recursions is None else {"num_recursions": arguments.num_recursions}
    output_dir = Path(output_dir) if output_dir is not None else Path(folder) / "onnx"
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"Exporting to ONNX needs onnx and onnxruntime: pip install 'minialbert[onnx]' ({error})"
        ) from error
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    architecture = (config.architectures or ["MiniAlbertModel"])[0]
    if task == "feature-extraction" and architecture in HEADS:
        # The encoder of a head's folder, loaded with its head so that no weight goes unused.
        model = getattr(modeling_minialbert, architecture).from_pretrained(str(folder), **depth).base_model.eval()
    else:
        model = ONNX_TASKS[task].model_class.from_pretrained(str(folder), **depth).eval()

    def write(staging: Path) -> None:
        model.config.save_pretrained(staging)
        for code_file in ("configuration_minialbert.py", "modeling_minialbert.py"):
            shutil.copy(Path(__file__).with_name(code_file), staging / code_file)
        tokenizer.save_pretrained(staging)
        export_model(model, task, staging / ONNX_FILE, arguments.exporter)
        difference = max_difference(model, OnnxRuntimeModel.from_pretrained(staging), task)
        if difference > PARITY_TOLERANCE:
            raise RuntimeError(
                f"The ONNX graph differs from the PyTorch model by {difference:.2e} (more than {PARITY_TOLERANCE}); "
                "nothing was written. Please report this with the folder's config.json."
            )
        logger.info("ONNX export of %s (%s): largest difference from PyTorch %.2e.", folder, task, difference)
        if arguments.quantize == "int8":
            quantize_int8(staging / ONNX_FILE, staging / QUANTIZED_ONNX_FILE)

    return write_folder(output_dir, write, overwrite)


class OnnxRuntimeModel:
    """An exported MiniAlbert run by ONNX Runtime, called like the PyTorch model: tokenizer outputs in (torch
    tensors), the task's `ModelOutput` out (`last_hidden_state`, `logits` or `start_logits`/`end_logits`).
    Per-token outputs at padding positions are whatever the graph computes there (PyTorch writes zeros): read
    them where `attention_mask` is 1.

    ```python
    from transformers import AutoTokenizer
    from minialbert import OnnxRuntimeModel

    model = OnnxRuntimeModel.from_pretrained("outputs/student/onnx")  # or file_name="model_quantized.onnx"
    tokenizer = AutoTokenizer.from_pretrained("outputs/student/onnx")
    batch = tokenizer(["ONNX Runtime runs the student."], return_tensors="pt")
    print(model(**batch).last_hidden_state.shape)
    ```
    """

    def __init__(self, session, config: MiniAlbertConfig):
        self.session = session
        self.config = config
        metadata = session.get_modelmeta().custom_metadata_map
        self.task = metadata.get("minialbert_task")
        if self.task not in ONNX_TASKS:
            raise ValueError(f"{session._model_path!r} was not exported by minialbert (no task in its metadata).")
        self.input_names = [graph_input.name for graph_input in session.get_inputs()]

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        file_name: str = ONNX_FILE,
        providers: list[str] | None = None,
        session_options=None,
    ) -> "OnnxRuntimeModel":
        """Load `folder/file_name`; `providers` and `session_options` (`onnxruntime.SessionOptions`) go to
        `onnxruntime.InferenceSession` (default: CPU, ONNX Runtime's own options)."""
        import onnxruntime

        path = Path(folder) / file_name
        if not path.is_file():
            raise FileNotFoundError(f"No {file_name} in {str(folder)!r}; export it with `minialbert export-onnx`.")
        session = onnxruntime.InferenceSession(
            str(path), session_options, providers=providers or ["CPUExecutionProvider"]
        )
        return cls(session, read_student_config(folder))

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **ignored,
    ) -> ModelOutput:
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
            "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
        }
        feed = {name: inputs[name].cpu().numpy().astype("int64") for name in self.input_names}
        outputs = self.session.run(list(ONNX_TASKS[self.task].output_names), feed)
        names = ONNX_TASKS[self.task].output_names
        return ONNX_TASKS[self.task].output_class(
            **{name: torch.from_numpy(value) for name, value in zip(names, outputs, strict=True)}
        )
