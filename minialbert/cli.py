"""The `minialbert` command line: a thin layer over the library, one subcommand per pipeline step.

Each subcommand parses its options with `HfArgumentParser` from the library's documented dataclass, so
`--embedding_size` and `--embedding-size` both work and `minialbert COMMAND --help` lists every option.
"""

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from transformers import HfArgumentParser

from . import __version__
from .errors import BadInputError, FolderWriteError, as_bad_input

# Each command imports what it runs when it runs: `minialbert --help` loads neither the Trainer nor ONNX Runtime
# (HfArgumentParser alone is light).


def parse(parser: HfArgumentParser, argv: list[str]) -> tuple:
    """The options as the parser's dataclasses; a value their checks refuse (TrainingArguments' own included) is bad
    input."""
    with as_bad_input("bad option: "):
        return parser.parse_args_into_dataclasses(argv)


def convert_command(argv: list[str]) -> int:
    from .convert import ConversionArguments
    from .convert_job import convert_and_save
    from .folders import OutputArguments

    parser = HfArgumentParser(
        (ConversionArguments, OutputArguments),
        prog="minialbert convert",
        description="Initialise a MiniAlbert student from a BERT checkpoint and write it as a Hub-ready folder.",
    )
    parser.add_argument("teacher", help="BERT checkpoint: a local folder or a Hub id.")
    parser.add_argument("output_dir", help="Folder to write the student into (absent or empty, see below).")
    arguments, output, paths = parse(parser, argv)
    folder = convert_and_save(paths.teacher, paths.output_dir, arguments, overwrite=output.overwrite_output_dir)
    print(f"Wrote the student to {folder}")
    return 0


def distill_command(argv: list[str]) -> int:
    from .convert import ConversionArguments
    from .data import DataArguments
    from .distill_job import StudentArguments, format_summary, run_distillation
    from .distillation import DistillationArguments
    from .folders import OutputArguments

    parser = HfArgumentParser(
        (StudentArguments, ConversionArguments, DataArguments, DistillationArguments, OutputArguments),
        prog="minialbert distill",
        description="Distil a BERT teacher into a MiniAlbert student with the Trainer. With only --output_dir: "
        "the bundled all-MiniLM-L6-v2 teacher and the installed corpus sources (BBC News and broad English text; "
        "--corpus). Accepts every TrainingArguments flag.",
    )
    summary = run_distillation(*parse(parser, argv))
    print(format_summary(summary))
    return 0


def import_published_command(argv: list[str]) -> int:
    from .folders import OutputArguments
    from .published import PUBLISHED_CHECKPOINTS, ImportArguments
    from .published_job import import_published

    parser = HfArgumentParser(
        (ImportArguments, OutputArguments),
        prog="minialbert import-published",
        description="Import a MiniALBERT checkpoint published by the paper's authors ("
        + ", ".join(PUBLISHED_CHECKPOINTS)
        + ") into a MiniAlbert folder that loads with AutoModel*.from_pretrained(..., trust_remote_code=True). "
        "Reads its config and weights as data: no code from it runs.",
    )
    parser.add_argument("source", help="The published checkpoint: a Hub id (with --revision) or a local folder.")
    parser.add_argument("--output_dir", "--output-dir", required=True, help="Folder to write (absent or empty).")
    arguments, output, paths = parse(parser, argv)
    folder = import_published(paths.source, paths.output_dir, arguments, overwrite=output.overwrite_output_dir)
    print(f"Imported {paths.source} into {folder}")
    return 0


def export_command(argv: list[str]) -> int:
    from .export_job import ExportArguments, export_student
    from .folders import OutputArguments

    parser = HfArgumentParser(
        (ExportArguments, OutputArguments),
        prog="minialbert export",
        description="Export a MiniAlbert folder through transformers' exporters, checked against PyTorch: an ONNX "
        "graph (optionally int8 as well), a torch.export program or an OpenVINO model, with its config, code and "
        "tokenizer, which ExportedModel.from_pretrained(folder, trust_remote_code=True) loads. ONNX goes to the "
        "student's onnx/ by default (where optimum's ORTModels and sentence-transformers' ONNX backend look). "
        "ONNX needs pip install 'minialbert[onnx]', OpenVINO pip install 'minialbert[openvino]'.",
    )
    parser.add_argument("folder", help="MiniAlbert folder (convert, distill, fine-tuning).")
    parser.add_argument(
        "--output_dir",
        "--output-dir",
        help="Where to write the export (default: FOLDER/onnx, FOLDER/torch_export or FOLDER/openvino).",
    )
    arguments, output, paths = parse(parser, argv)
    folder = export_student(paths.folder, paths.output_dir, arguments, overwrite=output.overwrite_output_dir)
    print(f"Wrote the {arguments.format} export to {folder}")
    return 0


def bench_command(argv: list[str]) -> int:
    from .export_job import calibration_texts
    from .runtimes import PATHS, fastest_runtime

    parser = argparse.ArgumentParser(
        prog="minialbert bench",
        description="Time every runtime path this machine offers for a student's encoder (PyTorch fp32, bf16 "
        "autocast where the CPU has native bf16, its torch.export program, ONNX Runtime fp32, int8 and static int8, "
        "OpenVINO fp32 and, with native bf16, bf16) on sample texts, compare each with PyTorch fp32, and name the "
        "fastest that agrees.",
    )
    parser.add_argument("folder", help="Student folder (convert, distill, fine-tuning).")
    parser.add_argument(
        "--sample_file",
        "--sample-file",
        help="Texts like those you will encode, one per line (default: bundled BBC News paragraphs).",
    )
    parser.add_argument("--paths", nargs="+", choices=PATHS, help="Paths to time (default: all this machine offers).")
    parser.add_argument(
        "--onnx_folder", "--onnx-folder", help="A feature-extraction export to time (default: export one for it)."
    )
    parser.add_argument("--num_recursions", "--num-recursions", type=int, help="Elastic depth (default: all).")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=32, help="Texts per batch.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed passes per path (their median counts).")
    parser.add_argument("--output_file", "--output-file", help="Also write the report as JSON here.")
    arguments = parser.parse_args(argv)
    report = fastest_runtime(
        arguments.folder,
        calibration_texts(arguments.sample_file, "--sample_file"),
        paths=arguments.paths,
        onnx_folder=arguments.onnx_folder,
        num_recursions=arguments.num_recursions,
        batch_size=arguments.batch_size,
        repeats=arguments.repeats,
    )
    if arguments.output_file:
        Path(arguments.output_file).write_text(json.dumps(report.to_dict(), indent=2))
    print(report.table())
    return 0


def push_command(argv: list[str]) -> int:
    from .hub import push_to_hub

    parser = argparse.ArgumentParser(
        prog="minialbert push",
        description="Check a student or adapter folder, then upload it with a generated model card. Uploads only "
        "config, code, weights, tokenizer (or the adapter files) and README.md; authenticates with `hf auth login` "
        "or HF_TOKEN.",
    )
    parser.add_argument("folder", help="Student folder (convert, distill, fine-tuning), save_tuned or PEFT folder.")
    parser.add_argument("repo_id", help="Target repository, namespace/name; created when missing.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--revision", help="Branch to push to (created from main when missing).")
    parser.add_argument("--commit_message", "--commit-message", help="Message of the upload commit.")
    parser.add_argument("--create_pr", "--create-pr", action="store_true", help="Open a pull request instead.")
    parser.add_argument(
        "--base_model", "--base-model", help="Hub id of the base student, for adapters saved against a local folder."
    )
    parser.add_argument(
        "--with_onnx",
        "--with-onnx",
        action="store_true",
        help="Also upload FOLDER/onnx (minialbert export), checked against the weights being uploaded.",
    )
    arguments = parser.parse_args(argv)
    commit = push_to_hub(
        arguments.folder,
        arguments.repo_id,
        private=arguments.private or None,
        revision=arguments.revision,
        commit_message=arguments.commit_message,
        create_pr=arguments.create_pr,
        base_model=arguments.base_model,
        with_onnx=arguments.with_onnx,
    )
    print(f"Pushed {arguments.folder} to {commit.pr_url or commit.commit_url}")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "convert": ("initialise a student from a BERT checkpoint's embeddings and layers", convert_command),
    "distill": ("distil a BERT teacher into a student with the stock Trainer", distill_command),
    "import-published": ("open a MiniALBERT checkpoint the paper's authors published", import_published_command),
    "export": (
        "export a student with transformers' exporters: ONNX (and int8), torch.export, OpenVINO",
        export_command,
    ),
    "export-onnx": ("the former name of `export` (ONNX is its default format)", export_command),
    "bench": ("find the fastest way to run a student on this machine", bench_command),
    "push": ("share a student or adapter on the Hub with a generated model card", push_command),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="minialbert",
        description="Turn a BERT teacher into a small recursive MiniAlbert student and share it on the Hub.",
        epilog="commands:\n" + "\n".join(f"  {name:<16} {summary}" for name, (summary, _) in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"minialbert {__version__}")
    parser.add_argument("command", choices=COMMANDS, metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help="the command's options (see COMMAND --help)")
    parsed = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    # Outside a training loop (which saves a checkpoint first: training_runs.CheckpointOnSignal) SIGTERM stops a
    # command as Ctrl-C does: with one line, and with what it holds (locks, staging folders) cleaned up on the way.
    previous = signal.signal(signal.SIGTERM, stop_now)
    try:
        return COMMANDS[parsed.command][1](parsed.arguments)
    except (BadInputError, FolderWriteError, KeyboardInterrupt) as error:
        if os.environ.get("MINIALBERT_DEBUG") == "1":
            raise
        message, status = exit_message(error)
        print(f"minialbert {parsed.command}: {message}", file=sys.stderr)
        return status
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_now(signal_number: int, frame) -> None:
    from .training_runs import Interrupted

    name = signal.Signals(signal_number).name
    raise Interrupted(f"stopped by {name}; {RERUN}", signal_number)


RERUN = "run the same command again (a training command resumes from its last complete checkpoint)."


def exit_message(error: BaseException) -> tuple[str, int]:
    """One line and an exit status for what ends a command early; `MINIALBERT_DEBUG=1` shows the traceback instead.
    Bad input (`BadInputError`: a value, a file, a folder, a missing optional extra) exits 2, a write that failed
    outside minialbert (`FolderWriteError`: a full disk) 1, a stop by a signal 128 + its number. Any other exception
    is a bug: `main` lets it through with its traceback."""
    from .training_runs import Interrupted

    if isinstance(error, Interrupted):
        return str(error), error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return f"stopped by Ctrl-C (SIGINT); {RERUN}", 128 + signal.SIGINT
    if isinstance(error, BadInputError):
        return f"error: {error}", 2
    return f"error: {error}", 1  # the message says what was left where the write failed


if __name__ == "__main__":
    sys.exit(main())
