"""`minialbert convert`: convert a BERT teacher (`minialbert.convert`) and write the student with the teacher's
tokenizer as a Hub-ready folder, atomically."""

import os
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from .convert import ConversionArguments, convert_bert_to_minialbert
from .errors import BadInputError
from .folders import claim_output, load_tokenizer, write_folder
from .modeling_minialbert import MiniAlbertForMaskedLM
from .teacher import load_teacher

TEACHER_TOKENIZER_FIX = "Pass --tokenizer with the teacher's tokenizer (folder or Hub id)."


def save_student(
    student: MiniAlbertForMaskedLM,
    output_dir: str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Hub-ready folder atomically (`minialbert.folders.write_folder`)."""

    def write(staging: Path) -> None:
        student.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)

    return write_folder(output_dir, write, overwrite)


def convert_and_save(
    teacher: str | os.PathLike, output_dir: str | os.PathLike, arguments: ConversionArguments, overwrite: bool = False
) -> Path:
    """`minialbert convert`: convert `teacher` and write the student with the teacher's tokenizer."""
    # The output folder is checked and locked before the teacher loads.
    with claim_output(output_dir, overwrite):
        return _convert_and_save(teacher, output_dir, arguments, overwrite)


def _convert_and_save(
    teacher: str | os.PathLike, output_dir: str | os.PathLike, arguments: ConversionArguments, overwrite: bool
) -> Path:
    loaded = load_teacher(teacher, arguments.revision)
    tokenizer_source = arguments.tokenizer or str(teacher)
    subject = "--tokenizer" if arguments.tokenizer else "The teacher"
    tokenizer = load_tokenizer(tokenizer_source, subject, TEACHER_TOKENIZER_FIX, arguments.revision)
    vocab_size = loaded.bert.config.vocab_size
    if len(tokenizer) > vocab_size:
        raise BadInputError(
            f"The tokenizer from {tokenizer_source!r} has {len(tokenizer)} tokens but the teacher's vocabulary has "
            f"{vocab_size}; pass the tokenizer the teacher was trained with (--tokenizer)."
        )
    student = convert_bert_to_minialbert(loaded, arguments, tokenizer=tokenizer)
    return save_student(student, output_dir, tokenizer, overwrite)
