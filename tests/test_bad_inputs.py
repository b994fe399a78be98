"""Every command and the Python API refuse bad input before any work: a message that names the value and the fix,
and nothing written anywhere."""

import contextlib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minialbert import MiniAlbertConfig, convert_bert_to_minialbert
from minialbert.cli import main
from minialbert.convert import ConversionArguments
from minialbert.convert_job import convert_and_save
from minialbert.data import DataArguments
from minialbert.distillation import DistillationArguments, DistillationTrainer
from minialbert.errors import BadInputError, MissingExtraError
from minialbert.teacher import bundled_teacher_path

from .conftest import entries

TINY_DISTILL = ["--embedding_size", "16", "--num_recursions", "2", "--broad_eval_sentences", "0", "--max_steps", "1",
                "--max_train_samples", "8", "--report_to", "none"]  # fmt: skip


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_bert_path, teacher_path) -> Path:
    """A workspace of bad inputs beside good ones: the tiny BERT teacher and a student converted from it."""
    root = tmp_path_factory.mktemp("bad-inputs")
    convert_and_save(tiny_bert_path, root / "student", ConversionArguments(embedding_size=16, num_recursions=2))

    def copy(source: Path, name: str, change) -> None:
        shutil.copytree(source, root / name)
        change(root / name)

    copy(tiny_bert_path, "teacher-config-not-json", lambda d: (d / "config.json").write_text("{not json"))
    copy(tiny_bert_path, "teacher-cut-off-weights",
         lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]))  # fmt: skip
    tokenizer_files = ("tokenizer", "vocab", "special")
    copy(tiny_bert_path, "teacher-without-tokenizer",
         lambda d: [path.unlink() for path in d.iterdir() if path.name.startswith(tokenizer_files)])  # fmt: skip
    copy(root / "student", "student-config-not-json", lambda d: (d / "config.json").write_text("[1,"))
    copy(root / "student", "student-cut-off-weights",
         lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:5000]))  # fmt: skip
    copy(root / "student", "student-without-tokenizer",
         lambda d: [path.unlink() for path in d.iterdir() if path.name.startswith(tokenizer_files)])  # fmt: skip
    (root / "empty.txt").write_text("")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 40)
    (root / "latin-1.txt").write_bytes("Café crème, naïve façade. ".encode("latin-1") * 50)
    (root / "existing").mkdir()
    (root / "existing" / "notes.txt").write_text("keep me")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_path)
    tokenizer.add_tokens([f"newword{index}" for index in range(10)])
    tokenizer.save_pretrained(root / "tokenizer-with-more-words")
    return root


def cli(*arguments: str) -> str:
    """Run a command in this process; return its error message (it must fail as bad input, exit status 2)."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert main(list(arguments)) == 2, errors.getvalue()[-2000:]
    return errors.getvalue()


# (the call, what the message must name: the value, the fix); "{bad}" is the workspace, "{teacher}" the tiny BERT.
CASES = {
    "convert: not a BERT checkpoint": (
        ["convert", "{bad}/student", "{bad}/out"], ["'minialbert' checkpoint", "accepts BERT checkpoints"]),
    "convert: config.json not JSON": (
        ["convert", "{bad}/teacher-config-not-json", "{bad}/out"], ["config.json' is not a valid JSON file",
                                                                      "Pass a BERT checkpoint"]),
    "convert: cut-off safetensors": (
        ["convert", "{bad}/teacher-cut-off-weights", "{bad}/out"],
        ["teacher-cut-off-weights", "needs a readable model.safetensors"]),
    "convert: no tokenizer": (
        ["convert", "{bad}/teacher-without-tokenizer", "{bad}/out"], ["no vocabulary", "Pass --tokenizer"]),
    "convert: vocabularies differ": (
        ["convert", "{teacher}", "{bad}/out", "--tokenizer", "{bad}/tokenizer-with-more-words"],
        ["has 30532 tokens but the teacher's vocabulary has 30522", "pass the tokenizer the teacher was trained"]),
    "convert: layer map out of range": (
        ["convert", "{teacher}", "{bad}/out", "--embedding_size", "16", "--num_recursions", "2",
         "--teacher_layer_map", "1", "9"], ["[1, 9]", "in [1, 4]"]),
    "convert: embedding size 0": (
        ["convert", "{teacher}", "{bad}/out", "--embedding_size", "0"], ["got 0", "positive integer"]),
    "convert: embeddings wider than the teacher": (
        ["convert", "{teacher}", "{bad}/out"], ["embedding_size (128)", "at most 32 wide"]),
    "convert: existing output": (
        ["convert", "{teacher}", "{bad}/existing", "--embedding_size", "16"], ["existing' is not empty",
                                                                              "--overwrite_output_dir"]),
    "distill: empty corpus file": (
        ["distill", "--teacher", "{teacher}", "--train_files", "{bad}/empty.txt", "--output_dir", "{bad}/out",
         *TINY_DISTILL], ["empty.txt: every file is empty", "pass files that hold text"]),
    "distill: binary corpus file": (
        ["distill", "--teacher", "{teacher}", "--train_files", "{bad}/binary.bin", "--output_dir", "{bad}/out",
         *TINY_DISTILL], ["binary.bin' is not UTF-8 text", "pass plain-text files"]),
    "distill: non-UTF-8 text": (
        ["distill", "--teacher", "{teacher}", "--train_files", "{bad}/latin-1.txt", "--output_dir", "{bad}/out",
         *TINY_DISTILL], ["latin-1.txt' is not UTF-8 text", "pass plain-text files"]),
    "distill: window longer than the teacher's positions": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--max_seq_length", "512", "--output_dir",
         "{bad}/out", *TINY_DISTILL], ["--max_seq_length 512", "pass --max_seq_length 128 or less"]),
    "distill: unknown corpus source": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc,klingon", "--output_dir", "{bad}/out", *TINY_DISTILL],
        ["'klingon', not a corpus source", "known: bbc, wordnet"]),
    "distill: negative corpus weight": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc:-1", "--output_dir", "{bad}/out", *TINY_DISTILL],
        ["weight of 'bbc' is -1", "must be positive"]),
    "distill: layer map out of range": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--layer_map", "1", "9", "--output_dir",
         "{bad}/out", *TINY_DISTILL], ["[1, 9]", "in [1, 4]"]),
    "distill: a BERT as --student": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--student", "{teacher}", "--output_dir", "{bad}/out",
         *TINY_DISTILL], ["holds a 'bert' model", "pass the BERT checkpoint as --teacher"]),
    "distill: student config.json not JSON": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--student", "{bad}/student-config-not-json",
         "--output_dir", "{bad}/out", *TINY_DISTILL], ["no readable config.json", "pass a MiniAlbert folder"]),
    "distill: masking probability": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--mlm_probability", "1.5", "--output_dir",
         "{bad}/out", *TINY_DISTILL], ["got 1.5", "must be in (0, 1)"]),
    "distill: existing output": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--output_dir", "{bad}/existing", *TINY_DISTILL],
        ["existing' is not empty and holds no checkpoint", "--overwrite_output_dir"]),
    "distill: cut-off student weights": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--student", "{bad}/student-cut-off-weights",
         "--output_dir", "{bad}/out", *TINY_DISTILL],
        ["student-cut-off-weights': its model.safetensors cannot be read", "pass a complete MiniAlbert folder"]),
    "distill: student without a tokenizer": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--student", "{bad}/student-without-tokenizer",
         "--output_dir", "{bad}/out", *TINY_DISTILL], ["student-without-tokenizer' has no tokenizer",
                                                         "save the student's tokenizer into that folder"]),
    # The output is checked first: its error comes before the empty corpus file's.
    "distill: output is a file": (
        ["distill", "--teacher", "{teacher}", "--train_files", "{bad}/empty.txt", "--output_dir", "{bad}/binary.bin",
         *TINY_DISTILL], ["binary.bin' is a file", "choose a folder"]),
    "distill: output on a location that takes no files": (
        ["distill", "--teacher", "{teacher}", "--train_files", "{bad}/empty.txt", "--output_dir", "/sys/minialbert",
         *TINY_DISTILL], ["'/sys/minialbert' cannot be written: '/sys' takes no new files", "choose a writable"]),
    "distill: --fsdp on CPU": (
        ["distill", "--teacher", "{teacher}", "--corpus", "bbc", "--fsdp", "--output_dir", "{bad}/out", *TINY_DISTILL],
        ["--fsdp on CPU", "Drop --fsdp to train with DDP"]),
    "import-published: a BERT checkpoint": (
        ["import-published", "{teacher}", "--output_dir", "{bad}/out"], ["holds a BERT model", "minialbert convert"]),
    "import-published: config.json not JSON": (
        ["import-published", "{bad}/teacher-config-not-json", "--output_dir", "{bad}/out"],
        ["config.json is not JSON", "download or copy it again"]),
    "import-published: cut-off safetensors": (
        ["import-published", "{bad}/teacher-cut-off-weights", "--output_dir", "{bad}/out"],
        ["model.safetensors cannot be read", "download or copy it again"]),
    "export: a BERT folder": (
        ["export", "{teacher}", "--output_dir", "{bad}/out"], ["holds a 'bert' model", "minialbert convert"]),
    "export: config.json not JSON": (
        ["export", "{bad}/student-config-not-json", "--output_dir", "{bad}/out"],
        ["no readable config.json", "pass a folder written by minialbert"]),
    "export: cut-off weights": (
        ["export", "{bad}/student-cut-off-weights", "--output_dir", "{bad}/out"],
        ["student-cut-off-weights': its model.safetensors cannot be read", "pass a complete student folder"]),
    "bench: cut-off weights": (
        ["bench", "{bad}/student-cut-off-weights", "--paths", "pytorch-fp32"],
        ["student-cut-off-weights': its model.safetensors cannot be read", "pass a complete student folder"]),
    "export: no such folder": (
        ["export", "{bad}/nowhere", "--output_dir", "{bad}/out"], ["nowhere' is not a folder",
                                                                        "pass the folder of a student"]),
    "export: existing output": (
        ["export", "{bad}/student", "--output_dir", "{bad}/existing"], ["existing' is not empty",
                                                                            "--overwrite_output_dir"]),
    "convert: output on a location that takes no files": (
        ["convert", "{teacher}", "/sys/minialbert"], ["'/sys/minialbert' cannot be written", "choose a writable"]),
    "push: cut-off weights": (
        ["push", "{bad}/student-cut-off-weights", "me/student"],
        ["student-cut-off-weights: its model.safetensors cannot be read", "save the model again"]),
    "push: a BERT folder": (["push", "{teacher}", "me/student"], ["holds a 'bert' model", "minialbert convert"]),
    "push: config.json not JSON": (
        ["push", "{bad}/student-config-not-json", "me/student"], ["no readable config.json", "minialbert convert"]),
    "push: not a repo id": (["push", "{bad}/student", "not a repo id!"], ["'not a repo id!'", "Repo id must use"]),
}  # fmt: skip


def python_api_cases(bad: Path, teacher: Path) -> dict:
    """(the call, the message's parts) for the library's own entry points."""
    student = convert_bert_to_minialbert(teacher, embedding_size=16, num_recursions=2)
    arguments = DistillationArguments(output_dir=str(bad / "out"), report_to="none")
    return {
        "MiniAlbertConfig: unknown adapter layout": (
            lambda: MiniAlbertConfig(adapter_layout="sideways"), ["got 'sideways'", "one of branch_norm, post_norm"]),
        "convert_bert_to_minialbert: no recursions": (
            lambda: convert_bert_to_minialbert(teacher, embedding_size=16, num_recursions=0),
            ["num_recursions must be at least 1, got 0", "runs that often"]),
        "DataArguments: a weight that is not a number": (
            lambda: DataArguments(corpus="bbc:lots").corpus_weights(), ["'lots' of 'bbc' is not a number", "bbc:2"]),
        "DistillationTrainer: teacher of another width": (
            lambda: DistillationTrainer(bundled_teacher_path(), student, arguments),
            ["hidden_size 32, the teacher 30522 and 384", "Convert the student from this teacher"]),
    }  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but the output locks' files, which stay once a lock was taken (filelock's rule)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and not (path.name.startswith(".") and path.suffix == ".lock")
    }


@pytest.mark.parametrize("case", [*CASES, "python api"])
def test_bad_input_is_refused_before_any_work_naming_the_value_and_the_fix(case, bad, tiny_bert_path):
    before = snapshot(bad)
    if case == "python api":
        for name, (call, parts) in python_api_cases(bad, tiny_bert_path).items():
            with pytest.raises(ValueError) as raised:
                call()
            assert all(part in str(raised.value) for part in parts), f"{name}: {raised.value}"
    else:
        arguments, parts = CASES[case]
        message = cli(*(argument.format(bad=bad, teacher=tiny_bert_path) for argument in arguments))
        assert all(part in message for part in parts), message
    assert snapshot(bad) == before, "a refused call wrote or changed files"
    assert not (bad / "out").exists()
    assert not [name for name in entries(bad) if name.startswith(".")], "a staging folder was left"


def test_a_missing_optional_extra_is_one_line_and_debug_shows_the_traceback(bad, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as without the onnx extra
    message = cli("export", str(bad / "student"), "--output_dir", str(bad / "out"))
    assert message.startswith("minialbert export: error: Exporting to onnx needs onnx, onnxscript, onnxruntime: pip ")
    assert "install 'minialbert[onnx]'" in message and len(message.strip().splitlines()) == 1
    monkeypatch.setenv("MINIALBERT_DEBUG", "1")
    with pytest.raises(ImportError, match=re.escape("pip install 'minialbert[onnx]'")):
        main(["export", str(bad / "student"), "--output_dir", str(bad / "out")])
    assert not (bad / "out").exists()


BUG = """
import sys
import minialbert.convert_job

def convert_with_a_bug(*args, **kwargs):
    raise ValueError("a bug deep inside")

minialbert.convert_job.convert_bert_to_minialbert = convert_with_a_bug
from minialbert.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_only_bad_input_is_one_line_and_a_bug_keeps_its_traceback(tiny_bert_path, tmp_path):
    """Bad input (`BadInputError`, and options transformers' own checks refuse) exits 2 with one line; a ValueError
    from inside the work is a bug: the command ends with its traceback (exit 1), not as if the input were wrong."""
    message = cli("distill", "--output_dir", str(tmp_path / "x"), "--bf16", "true", "--fp16", "true")
    assert message.startswith("minialbert distill: error: bad option: At most one of fp16 and bf16 can be True")
    assert len(message.strip().splitlines()) == 1
    assert issubclass(BadInputError, ValueError) and issubclass(MissingExtraError, ImportError)

    result = subprocess.run(
        [sys.executable, "-c", BUG, "convert", str(tiny_bert_path), str(tmp_path / "student")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "ValueError: a bug deep inside"
    assert entries(tmp_path) == []
