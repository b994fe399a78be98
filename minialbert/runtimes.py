"""Serve a student the fastest way this machine allows: time every runtime path on the user's own texts, check each
against PyTorch fp32, and name the fastest one that agrees.

The paths: PyTorch fp32; PyTorch under bf16 autocast where the CPU has native bf16 (avx512_bf16 or amx_bf16);
the `torch.export` program transformers' `DynamoExporter` writes; ONNX Runtime fp32, dynamic int8 and static
(calibrated, QDQ) int8 from `minialbert export`; OpenVINO (`minialbert export --format openvino`) at fp32, and at
bf16 where the CPU has it natively. Machines differ (AMX makes bf16 fast, VNNI makes int8 fast), so this is
measured where the model will run, not assumed.

```python
from minialbert import fastest_runtime

report = fastest_runtime("outputs/student", ["The texts you will encode.", "A few hundred of them.", "Like these."])
print(report.winner)
print(report.table())
```
"""

import importlib.util
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import ModelOutput

from . import export
from .configuration_minialbert import MiniAlbertConfig, check_num_recursions
from .devices import cpu_has_native_bf16, cpu_name
from .errors import BadInputError, as_bad_input
from .export import (
    ONNX_FILE,
    QUANTIZATIONS,
    load_encoder,
    read_student_config,
)
from .folders import CODE_FILES, write_folder
from .modeling_minialbert import MiniAlbertPreTrainedModel
from .sentence_embeddings import pool, sentence_batches, similarity_spearman

if TYPE_CHECKING:
    from transformers.exporters import ExportedModel

logger = logging.getLogger(__name__)


ONNX_PATHS = {"onnxruntime-fp32": ONNX_FILE} | {f"onnxruntime-{name}": file for name, file in QUANTIZATIONS.items()}
# The other formats transformers' exporters write, and the OpenVINO CPU plugin's precision each runs at.
OPENVINO_PATHS = {"openvino-fp32": "f32", "openvino-bf16": "bf16"}
PATHS = ("pytorch-fp32", "pytorch-bf16", "torch-export", *ONNX_PATHS, *OPENVINO_PATHS)
NATIVE_BF16_PATHS = ("pytorch-bf16", "openvino-bf16")
RUNTIME_REPORT_FILE = "runtime_report.json"


@dataclass
class RuntimeMeasurement:
    """One path's figures: real (non-padding) tokens per second over the sample texts, and how closely its sentence
    embeddings (mean-pooled) follow PyTorch fp32's: `agreement`, the Spearman correlation of the texts' pairwise
    cosine similarities, and `max_difference`, the largest difference of the last hidden states at real tokens."""

    path: str
    tokens_per_second: float
    agreement: float
    max_difference: float


@dataclass
class RuntimeReport:
    """What `fastest_runtime` measured, and the `winner`: the fastest path whose agreement reaches `min_agreement`."""

    folder: str
    num_recursions: int
    cpu: str
    threads: int
    texts: int
    real_tokens: int
    batch_size: int
    min_agreement: float
    measurements: list[RuntimeMeasurement]
    skipped: dict[str, str] = field(default_factory=dict)  # path: why it was not measured

    @property
    def winner(self) -> str:
        qualified = [m for m in self.measurements if m.agreement >= self.min_agreement]
        return max(qualified, key=lambda measurement: measurement.tokens_per_second).path

    def to_dict(self) -> dict:
        return asdict(self) | {"winner": self.winner}

    @classmethod
    def from_dict(cls, values: dict) -> "RuntimeReport":
        """The report of `to_dict` (runtime_report.json), read as data."""
        fields = {name: value for name, value in values.items() if name != "winner"}
        fields["measurements"] = [RuntimeMeasurement(**measurement) for measurement in fields["measurements"]]
        return cls(**fields)

    def table(self) -> str:
        """A Markdown table of the paths, fastest first, and the winner."""
        baseline = next(m for m in self.measurements if m.path == "pytorch-fp32").tokens_per_second
        rows = [
            "| path | tokens/s | vs PyTorch fp32 | agreement with fp32 | max difference |",
            "|---|---:|---:|---:|---:|",
        ]
        for m in sorted(self.measurements, key=lambda measurement: -measurement.tokens_per_second):
            name = f"**{m.path}**" if m.path == self.winner else m.path
            rows.append(
                f"| {name} | {m.tokens_per_second:,.0f} | {m.tokens_per_second / baseline:.2f}x | "
                f"{m.agreement:.4f} | {m.max_difference:.1e} |"
            )
        rows += [f"| {path} | not measured: {why} | | | |" for path, why in self.skipped.items()]
        return "\n".join(rows) + (
            f"\n\nFastest with agreement >= {self.min_agreement}: **{self.winner}** ({self.num_recursions} "
            f"recursions; {self.texts} texts, {self.real_tokens:,} real tokens in batches of {self.batch_size}; "
            f"{self.cpu}, {self.threads} threads)."
        )


def _check_texts(sample_texts: list[str]) -> list[str]:
    if isinstance(sample_texts, str) or len(sample_texts) < 3 or not all(isinstance(t, str) for t in sample_texts):
        count = 1 if isinstance(sample_texts, str) else len(sample_texts)
        raise BadInputError(
            f"sample_texts holds {count} text(s): agreement ranks pairs of texts, so pass a list of at least 3, "
            "ideally a few hundred like those you will encode (`minialbert bench FOLDER --sample_file texts.txt`, "
            "one text per line)."
        )
    return list(sample_texts)


def _onnx_exports(
    folder: Path,
    config: MiniAlbertConfig,
    tokenizer: PreTrainedTokenizerBase,
    onnx_folder: Path | None,
    wanted: list[str],
    explicit: bool,
    depth: int,
    texts: list[str],
    scratch: Path,
) -> tuple[Path | None, dict[str, str]]:
    """The folder holding the ONNX files of `wanted` paths, and the ONNX paths left out with why: `onnx_folder` as
    given (each `explicit`ly wanted path's file must be there, and at least one), or a fresh feature-extraction
    export at `depth` into `scratch`, static int8 calibrated on `texts`."""
    onnx_paths = [path for path in wanted if path in ONNX_PATHS]
    if not onnx_paths:
        return None, {}
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, dict.fromkeys(onnx_paths, "ONNX Runtime is not installed: pip install 'minialbert[onnx]'")
    if onnx_folder is None:
        quantize = [path.removeprefix("onnxruntime-") for path in onnx_paths if path != "onnxruntime-fp32"]
        # Static int8 is calibrated on the texts it is timed on: the user's own.
        model = load_encoder(folder, config, num_recursions=depth)

        def write(staging: Path) -> None:
            write_export(model, tokenizer, staging, "feature-extraction", quantize=quantize, texts=texts)

        return write_folder(scratch / "onnx", write), {}
    export_config = read_student_config(onnx_folder)
    fix = (
        f"export it with `minialbert export {folder} --task feature-extraction --num_recursions {depth} "
        f"--quantize int8 int8-static --output_dir {onnx_folder}`, or leave out the ONNX folder to export one for "
        "the measurement"
    )
    exported_depth = export_config.num_recursions or export_config.num_hidden_layers
    if exported_depth != depth:
        raise BadInputError(f"{onnx_folder} runs {exported_depth} recursions, not {depth}; {fix}.")
    missing = {path: ONNX_PATHS[path] for path in onnx_paths if not (onnx_folder / ONNX_PATHS[path]).is_file()}
    if explicit and missing or len(missing) == len(onnx_paths):
        raise BadInputError(f"{onnx_folder} holds no {' or '.join(missing.values())}, which {', '.join(missing)} "
                         f"need(s); {fix}.")  # fmt: skip
    for path in onnx_paths:
        if path not in missing and OnnxRuntimeModel.from_pretrained(onnx_folder, ONNX_PATHS[path]).task != (
            "feature-extraction"
        ):
            raise BadInputError(
                f"{onnx_folder}/{ONNX_PATHS[path]} computes a head's outputs, not the encoder's; {fix}."
            )
    return onnx_folder, {path: f"not exported in {onnx_folder}" for path in missing}


def _runners(
    folder: Path,
    config: MiniAlbertConfig,
    tokenizer: PreTrainedTokenizerBase,
    paths: list[str],
    depth: int,
    onnx_folder: Path | None,
    scratch: Path,
) -> dict[str, Callable[[dict[str, torch.Tensor]], torch.Tensor]]:
    """For each path, a function from a tokenizer batch to the last hidden state (fp32). The torch.export and
    OpenVINO paths are exported at `depth` into `scratch` (parity-checked as `minialbert export` checks them) and
    run by transformers' runners, each batch in length groups as `OnnxRuntimeModel` runs it."""
    model = load_encoder(folder, config, num_recursions=depth)
    threads = torch.get_num_threads()

    def pytorch(batch, bf16: bool = False):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(**batch).last_hidden_state.float()

    def exported(export_format: str, **runner_options):
        export_folder = scratch / export_format
        if not export_folder.is_dir():
            export_folder.mkdir()
            write_export(model, tokenizer, export_folder, "feature-extraction", export_format)
        runner = load_export(export_folder, **runner_options)
        return lambda batch: in_length_groups(lambda group: [runner(**group).last_hidden_state], batch)[0]

    runners = {"pytorch-fp32": pytorch, "pytorch-bf16": lambda batch: pytorch(batch, bf16=True)}
    if "torch-export" in paths:
        runners["torch-export"] = exported("dynamo")
    for path, precision in OPENVINO_PATHS.items():
        if path in paths:
            # As many threads as PyTorch uses: like for like.
            options = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads}
            run = exported("openvino", config=options)
            runners[path] = lambda batch, run=run: run(batch).float()
    if onnx_folder is not None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # as many as PyTorch uses: like for like
        # Idle ONNX Runtime threads spin by default, which would slow whichever path runs next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for path in (path for path in paths if path in ONNX_PATHS):
            runner = OnnxRuntimeModel.from_pretrained(onnx_folder, ONNX_PATHS[path], session_options=options)
            runners[path] = lambda batch, runner=runner: runner(**batch).last_hidden_state
    return {path: runners[path] for path in paths}


def fastest_runtime(
    folder: str | os.PathLike,
    sample_texts: list[str],
    paths: list[str] | None = None,
    onnx_folder: str | os.PathLike | None = None,
    num_recursions: int | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    repeats: int = 5,
    min_agreement: float = 0.99,
) -> RuntimeReport:
    """Time each runtime path on `sample_texts` (batches of `batch_size` in the given order, each padded to its
    longest text, as a user would send them) and compare it with PyTorch fp32; the report names the fastest path
    whose agreement is at least `min_agreement`.

    Args:
        folder: a student folder (any head: its encoder is measured).
        sample_texts: at least 3 texts like those the model will encode.
        paths: the paths to measure (default: every path this machine offers; see `PATHS`).
        onnx_folder: a feature-extraction export to measure (`minialbert export --task feature-extraction`,
            with the `--quantize` files of the int8 paths); by default one is exported into a temporary folder.
        num_recursions: elastic depth to measure at (default: the student's).
        repeats: timed passes over all texts per path, interleaved across paths; each figure is their median.
    """
    sample_texts = _check_texts(sample_texts)
    folder = Path(folder)
    config = read_student_config(folder)
    with as_bad_input():
        check_num_recursions(num_recursions, config.num_hidden_layers)
    depth = num_recursions or config.num_recursions or config.num_hidden_layers
    unknown = [path for path in paths or () if path not in PATHS]
    if unknown or paths == []:
        raise BadInputError(f"Unknown runtime path(s) {unknown or paths}; choose from {', '.join(PATHS)}.")
    skipped = {}
    if not cpu_has_native_bf16():
        why = "this CPU has no native bf16 (avx512_bf16 or amx_bf16); emulated bf16 is slow"
        skipped = dict.fromkeys(NATIVE_BF16_PATHS, why)
    for path in sorted(set(paths or ()) & set(skipped)):
        raise BadInputError(f"{path} cannot run well here: {skipped[path]}.")
    if not importlib.util.find_spec("openvino"):
        unavailable = dict.fromkeys(OPENVINO_PATHS, "OpenVINO is not installed: pip install 'minialbert[openvino]'")
        for path in sorted(set(paths or ()) & set(unavailable)):
            raise BadInputError(f"{path} cannot run here: {unavailable[path]}.")
        skipped |= {path: why for path, why in unavailable.items() if path not in skipped}
    wanted = [path for path in (paths or PATHS) if path not in skipped]
    if "pytorch-fp32" not in wanted:
        wanted.insert(0, "pytorch-fp32")  # the reference every agreement is measured against
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batches = sentence_batches(tokenizer, sample_texts, batch_size, max_length)
    real_tokens = sum(int(batch["attention_mask"].sum()) for batch in batches)

    with tempfile.TemporaryDirectory() as scratch:
        exported, unavailable = _onnx_exports(
            folder,
            config,
            tokenizer,
            Path(onnx_folder) if onnx_folder else None,
            wanted,
            paths is not None,
            depth,
            sample_texts,
            Path(scratch),
        )
        if paths is not None and unavailable:
            path, why = next(iter(unavailable.items()))
            raise BadInputError(f"{path} cannot run here: {why}.")
        skipped |= unavailable
        wanted = [path for path in wanted if path not in unavailable]
        runners = _runners(folder, config, tokenizer, wanted, depth, exported, Path(scratch))
        outputs = {path: [run(batch) for batch in batches] for path, run in runners.items()}  # also the warm-up
        timings = {path: [] for path in runners}
        for _ in range(repeats):
            for path, run in runners.items():
                start = time.perf_counter()
                for batch in batches:
                    run(batch)
                timings[path].append(time.perf_counter() - start)

    def embeddings(path: str) -> torch.Tensor:
        return torch.cat([pool(states, b["attention_mask"]) for states, b in zip(outputs[path], batches, strict=True)])

    reference = embeddings("pytorch-fp32")
    measurements = []
    for path in runners:
        difference = max(
            float((states - expected)[batch["attention_mask"].bool()].abs().max())
            for states, expected, batch in zip(outputs[path], outputs["pytorch-fp32"], batches, strict=True)
        )
        agreement = 1.0 if path == "pytorch-fp32" else similarity_spearman(embeddings(path), reference)
        measurements.append(
            RuntimeMeasurement(path, real_tokens / statistics.median(timings[path]), round(agreement, 4), difference)
        )
    report = RuntimeReport(
        folder=str(folder),
        num_recursions=depth,
        cpu=cpu_name(),
        threads=torch.get_num_threads(),
        texts=len(sample_texts),
        real_tokens=real_tokens,
        batch_size=batch_size,
        min_agreement=min_agreement,
        measurements=measurements,
        skipped=skipped,
    )
    logger.info("Fastest runtime for %s at %d recursions: %s.", folder, depth, report.winner)
    return report


def max_difference(model: MiniAlbertPreTrainedModel, exported: Callable[..., ModelOutput], task: str) -> float:
    """Largest absolute difference between the PyTorch outputs and those of `exported` (an `ExportedModel` or an
    `OnnxRuntimeModel`), over the real tokens of padded batches of several shapes (padding positions are not
    outputs anyone reads)."""
    worst = 0.0
    for batch in export.example_batches(model.config):
        with torch.no_grad():
            expected = model(**batch)
        got = exported(**batch)
        for name in export.ONNX_TASKS[task].output_names:
            difference = (got[name] - expected[name]).abs()
            if task != "text-classification":  # per-token outputs
                difference = difference[batch["attention_mask"].bool()]
            worst = max(worst, float(difference.max()))
    return worst


# What the parity check runs an OpenVINO export at: its CPU plugin runs bf16 by default where the CPU has it, which
# `fastest_runtime` measures as a path of its own; the graph itself is checked at fp32.
OPENVINO_FP32 = {"config": {"INFERENCE_PRECISION_HINT": "f32"}}


def load_export(folder: str | os.PathLike, **runner_kwargs) -> "ExportedModel":
    """An export this package wrote, run by transformers' runner for its format (`ExportedModel.from_pretrained`).
    Its code is trusted: minialbert wrote the folder (the config's code files, and a torch.export program, which is
    pickled)."""
    from transformers.exporters import ExportedModel

    return ExportedModel.from_pretrained(folder, trust_remote_code=True, **runner_kwargs)


def write_export(
    model: MiniAlbertPreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    folder: Path,
    task: str,
    export_format: str = "onnx",
    exporter: str = "torchscript",
    quantize: list[str] | None = None,
    texts: list[str] | None = None,
    merge_relaxations: bool = True,
) -> None:
    """Write the exported folder's files into `folder`: `model` exported for `task` as an `ExportedModel` of
    `export_format` (`export.export_model`, written by `export.save_export`; refused unless it reproduces the PyTorch
    outputs within `export.PARITY_TOLERANCE`, run as `ExportedModel.from_pretrained` runs it), the config's code
    files, the tokenizer, and the ONNX graph's `quantize` copies (static int8 calibrated on `texts`). The export
    module's functions and tolerance are read through it, where tests and users may replace them."""
    exported = export.export_model(model, task, export_format, exporter, merge_relaxations)
    export.save_export(exported, folder)
    for code_file in CODE_FILES:
        shutil.copy(Path(__file__).with_name(code_file), folder / code_file)
    tokenizer.save_pretrained(folder)
    runner_options = OPENVINO_FP32 if export_format == "openvino" else {}
    difference = max_difference(model, load_export(folder, **runner_options), task)
    if difference > export.PARITY_TOLERANCE:
        raise RuntimeError(
            f"The {export_format} export differs from the PyTorch model by {difference:.2e} (more than "
            f"{export.PARITY_TOLERANCE}); nothing was written. Please report this with the folder's config.json."
        )
    logger.info("%s export (%s): largest difference from PyTorch %.2e.", export_format, task, difference)
    for quantization in quantize or ():
        calibration = export.calibration_batches(tokenizer, texts) if quantization == "int8-static" else None
        target = folder / export.QUANTIZATIONS[quantization]
        export.quantize(folder / export.ONNX_FILE, target, quantization, calibration)


class OnnxRuntimeModel:
    """An exported MiniAlbert run by ONNX Runtime, called like the PyTorch model: tokenizer outputs in (torch
    tensors), the task's `ModelOutput` out (`last_hidden_state`, `logits` or `start_logits`/`end_logits`).

    A graph computes every position of its input, padding included, where PyTorch skips padding: so a right-padded
    batch runs in groups of rows of similar length, each cut to its longest row (`length_groups`), and per-token
    outputs at padding positions hold zeros. Read per-token outputs where `attention_mask` is 1. It runs the int8
    copies too; transformers' `ExportedModel.from_pretrained(folder, trust_remote_code=True)` runs `model.onnx` of
    the same folder on the whole padded batch (slower on padded batches: docs/deploy.md).

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
        if self.task not in export.ONNX_TASKS:
            raise BadInputError(f"{session._model_path!r} was not exported by minialbert (no task in its metadata).")
        self.input_names = [graph_input.name for graph_input in session.get_inputs()]

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        file_name: str = export.ONNX_FILE,
        providers: list[str] | None = None,
        session_options=None,
    ) -> "OnnxRuntimeModel":
        """Load `folder/file_name`; `providers` and `session_options` (`onnxruntime.SessionOptions`) go to
        `onnxruntime.InferenceSession` (default: CPU, ONNX Runtime's own options)."""
        import onnxruntime

        path = Path(folder) / file_name
        if not path.is_file():
            raise FileNotFoundError(f"No {file_name} in {str(folder)!r}; export it with `minialbert export`.")
        session = onnxruntime.InferenceSession(
            str(path), session_options, providers=providers or ["CPUExecutionProvider"]
        )
        return cls(session, export.read_student_config(folder))

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
        names = export.ONNX_TASKS[self.task].output_names
        outputs = in_length_groups(self._run, inputs, per_row=self.task == "text-classification")
        return export.ONNX_TASKS[self.task].output_class(**dict(zip(names, outputs, strict=True)))

    def _run(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        feed = {name: inputs[name].cpu().numpy().astype("int64") for name in self.input_names}
        return [
            torch.from_numpy(value)
            for value in self.session.run(list(export.ONNX_TASKS[self.task].output_names), feed)
        ]


def in_length_groups(
    run: Callable[[dict[str, torch.Tensor]], list[torch.Tensor]],
    inputs: dict[str, torch.Tensor],
    per_row: bool = False,
) -> list[torch.Tensor]:
    """`run`'s outputs for a batch, computed in `length_groups`, each group cut to its longest row: an exported graph
    computes every position of its input, padding included, where PyTorch skips padding. Per-token outputs at
    padding positions hold zeros; `per_row` outputs (a classifier's logits) have no positions."""
    groups = length_groups(inputs["attention_mask"])
    if groups is None:
        return run(inputs)
    shape = inputs["input_ids"].shape[:1] if per_row else inputs["input_ids"].shape[:2]
    outputs = None
    for rows, length in groups:
        group = run({name: tensor[rows, :length] for name, tensor in inputs.items()})
        if outputs is None:  # zeros of the whole batch's shape, per row or per token
            outputs = [value.new_zeros(shape + value.shape[len(shape) :]) for value in group]
        for output, value in zip(outputs, group, strict=True):
            if per_row:
                output[rows] = value
            else:
                output[rows, :length] = value
    if not per_row:
        for output in outputs:
            output[~inputs["attention_mask"].bool()] = 0  # padding of a group's shorter rows
    return outputs


def length_groups(attention_mask: torch.Tensor) -> list[tuple[torch.Tensor, int]] | None:
    """A right-padded batch's rows in groups of similar length, each with its longest length: in order of length,
    a row starts a new group when it is more than 30% (and 8 tokens) longer than the group's shortest, which bounds
    the padding each group computes without running many tiny groups. None for a batch without padding or padded
    otherwise than at the right end, or with an empty row (run as it is)."""
    lengths = attention_mask.sum(-1)
    positions = torch.arange(attention_mask.shape[1])
    if (
        bool((lengths == attention_mask.shape[1]).all())
        or bool((lengths == 0).any())
        or not torch.equal(attention_mask.bool(), positions[None, :] < lengths[:, None])
    ):
        return None
    order = torch.argsort(lengths, stable=True)
    groups, start = [], 0
    for end in range(1, len(order) + 1):
        shortest = int(lengths[order[start]])
        if end == len(order) or int(lengths[order[end]]) > max(1.3 * shortest, shortest + 8):
            groups.append((order[start:end], int(lengths[order[end - 1]])))
            start = end
    return groups
