"""`minialbert export`: export a MiniAlbert folder through transformers' exporters (`minialbert.export` builds the
`ExportedModel` and the int8 copies, `minialbert.runtimes` checks it) into a folder that appears complete or not at
all, and with `--bench`, time every runtime path on this machine (`minialbert.runtimes`) and keep the report beside
the files.
"""

import importlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer

from .configuration_minialbert import MiniAlbertConfig, check_num_recursions
from .errors import BadInputError, MissingExtraError, as_bad_input
from .export import (
    CALIBRATION_TEXTS,
    EXPORTERS,
    FORMATS,
    ONNX_TASKS,
    QUANTIZATIONS,
    load_encoder,
    read_student_config,
    reading_student_weights,
    task_of,
)
from .folders import claim_output, write_folder
from .runtimes import RUNTIME_REPORT_FILE, fastest_runtime, write_export

logger = logging.getLogger(__name__)


@dataclass
class ExportArguments:
    format: str = field(
        default="onnx",
        metadata={
            "help": "What transformers.exporters writes: an ONNX graph (ONNX Runtime, optimum, "
            "sentence-transformers), a torch.export program (dynamo) or an OpenVINO model; each loads with "
            "ExportedModel.from_pretrained(folder, trust_remote_code=True).",
            "choices": list(FORMATS),
        },
    )
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
            "help": "The ONNX graph's builder: torch.onnx's TorchScript-based exporter (faster graphs here, "
            "measured in benchmarks/run.py) or transformers' OnnxExporter (torch.export-based).",
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
    quantize: list[str] | None = field(
        default=None,
        metadata={
            "help": "Also write int8 copies of the ONNX graph with transformers' OnnxRuntimeQuantizer: 'int8' "
            "(model_quantized.onnx, dynamic: "
            "int8 weights, activations quantised at run time) and/or 'int8-static' (model_static_quantized.onnx, "
            "QDQ with activation ranges calibrated on --calibration_file).",
            "choices": list(QUANTIZATIONS),
        },
    )
    calibration_file: str | None = field(
        default=None,
        metadata={
            "help": "Text file, one text per line, that calibrates int8-static's activation ranges: text like what "
            f"the model will encode (default: {CALIBRATION_TEXTS} BBC News paragraphs of the bundled corpus)."
        },
    )
    merge_relaxations: bool = field(
        default=True,
        metadata={
            "help": "A relaxed student's recursions exported with their own merged weights (one matrix multiply per "
            "linear: faster, a larger file) rather than the shared weights plus low-rank pairs."
        },
    )
    bench: bool = field(
        default=False,
        metadata={
            "help": "After exporting a feature-extraction model, time every runtime path on this machine "
            "(minialbert bench) on the calibration text, and write the report (runtime_report.json, which the "
            "model card of `minialbert push --with_onnx` shows)."
        },
    )

    def __post_init__(self):
        if isinstance(self.quantize, str):
            self.quantize = [self.quantize]
        unknown = [name for name in self.quantize or () if name not in QUANTIZATIONS]
        if unknown:
            raise BadInputError(f"--quantize {' '.join(unknown)}: choose from {', '.join(QUANTIZATIONS)}.")
        if self.format not in FORMATS:
            raise BadInputError(f"--format {self.format}: choose from {', '.join(FORMATS)}.")
        if self.quantize and self.format != "onnx":
            raise BadInputError(
                f"--quantize makes int8 copies of an ONNX graph: pass --format onnx, not {self.format}."
            )
        if self.bench and self.task != "feature-extraction":
            raise BadInputError("--bench times the encoder: export with --task feature-extraction.")


def calibration_texts(text_file: str | os.PathLike | None, option: str = "--calibration_file") -> list[str]:
    """The texts that calibrate static int8 and that `--bench` and `minialbert bench` time: a file's lines (named
    `option` in errors), or bundled BBC News paragraphs of the training split (never of the test split the
    benchmarks score on)."""
    if text_file is not None:
        path = Path(text_file)
        if not path.is_file():
            raise BadInputError(f"{option} {str(path)!r} is not a file; pass a text file, one text per line.")
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(texts) < 3:
            raise BadInputError(
                f"{option} {str(path)!r} holds {len(texts)} text(s); pass at least 3 (a few hundred like those the "
                "model will encode)."
            )
        return texts
    from .corpora import bbc_paragraphs

    return bbc_paragraphs("train", CALIBRATION_TEXTS)


def export_student(
    folder: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    arguments: ExportArguments | None = None,
    overwrite: bool = False,
) -> Path:
    """Export the MiniAlbert in `folder` as `arguments.format` (ONNX by default, optionally with int8 copies) into
    `output_dir` (default `folder/onnx`, `folder/torch_export` or `folder/openvino`): a folder that
    `transformers.exporters.ExportedModel.from_pretrained(output_dir, trust_remote_code=True)` loads.

    The export is checked before it is written: run as `ExportedModel` runs it, it must reproduce the PyTorch
    outputs within 1e-4 on padded batches of several shapes. The folder appears complete or not at all.
    """
    arguments = arguments or ExportArguments()
    config = read_student_config(folder)
    task = task_of(config, arguments.task)
    with as_bad_input():
        check_num_recursions(arguments.num_recursions, config.num_hidden_layers)
    depth = {} if arguments.num_recursions is None else {"num_recursions": arguments.num_recursions}
    output_dir = Path(output_dir) if output_dir is not None else Path(folder) / FORMATS[arguments.format]
    check_export_packages(arguments.format)
    with claim_output(output_dir, overwrite):  # checked and locked before the model loads
        return _export_student(folder, output_dir, arguments, overwrite, config, task, depth)


# What each format needs beside torch; the extra that installs it has the format's name.
FORMAT_PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "dynamo": (), "openvino": ("openvino",)}


def check_export_packages(export_format: str) -> None:
    """Raise MissingExtraError, naming the extra to install, when `export_format` cannot be written or run here."""
    packages = FORMAT_PACKAGES[export_format]
    try:
        for package in packages:
            importlib.import_module(package)
    except ImportError as error:
        raise MissingExtraError(
            f"Exporting to {export_format} needs {', '.join(packages)}: pip install 'minialbert[{export_format}]' "
            f"({error})"
        ) from error


def _export_student(
    folder: str | os.PathLike,
    output_dir: Path,
    arguments: ExportArguments,
    overwrite: bool,
    config: MiniAlbertConfig,
    task: str,
    depth: dict[str, int],
) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    needs_texts = "int8-static" in (arguments.quantize or ()) or arguments.bench
    texts = calibration_texts(arguments.calibration_file) if needs_texts else []
    if task == "feature-extraction":
        model = load_encoder(folder, config, **depth)
    else:
        with reading_student_weights(folder):
            model = ONNX_TASKS[task].model_class.from_pretrained(str(folder), **depth).eval()

    def write(staging: Path) -> None:
        write_export(
            model,
            tokenizer,
            staging,
            task,
            arguments.format,
            arguments.exporter,
            arguments.quantize,
            texts,
            arguments.merge_relaxations,
        )
        if arguments.bench:
            onnx_folder = staging if arguments.format == "onnx" else None
            report = fastest_runtime(folder, texts, onnx_folder=onnx_folder, num_recursions=arguments.num_recursions)
            (staging / RUNTIME_REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
            logger.info("Runtime paths on this machine:\n%s", report.table())

    return write_folder(output_dir, write, overwrite)
