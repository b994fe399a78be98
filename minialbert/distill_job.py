"""`minialbert distill`: convert (or load) a student, distil it with `DistillationTrainer` on a corpus, save it
Hub-ready (with the teacher's sentence-transformers modules where it has them), and report how closely it follows
the teacher before and after, in `distillation_summary.json` and in print.
"""

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from transformers import enable_full_determinism, set_seed

from .convert import ConversionArguments, convert_bert_to_minialbert
from .convert_job import TEACHER_TOKENIZER_FIX
from .data import DataArguments, load_text_corpus, tokenize_windows
from .devices import check_fsdp_device, machine
from .distillation import (
    DistillationArguments,
    DistillationSummary,
    DistillationTrainer,
    SentenceAgreementCallback,
    agreement_by_depth,
    agreement_report,
    recipe_name,
)
from .errors import BadInputError
from .folders import OutputArguments, load_tokenizer, read_minialbert_config, reading_weights
from .held_out import held_out_sets
from .modeling_minialbert import MiniAlbertForMaskedLM
from .run_record import run_options
from .sentence_embeddings import save_sentence_modules
from .teacher import bundled_teacher_path, load_teacher
from .training_runs import TrainingOutput, prepare_training_output

logger = logging.getLogger(__name__)


@dataclass
class StudentArguments:
    """Which teacher to distil and where the student starts."""

    teacher: str | None = field(
        default=None,
        metadata={"help": "BERT teacher: folder or Hub id (default: the bundled all-MiniLM-L6-v2)."},
    )
    student: str | None = field(
        default=None,
        metadata={"help": "Start from this MiniAlbert folder or Hub id instead of converting the teacher."},
    )


def load_student(name_or_path: str) -> MiniAlbertForMaskedLM:
    # config.json read as data, then the installed package's classes: no code stored with the student runs.
    read_minialbert_config(
        name_or_path,
        f"--student {name_or_path!r}",
        "pass a MiniAlbert folder (from minialbert convert or distill), or pass the BERT checkpoint as --teacher to "
        "convert it.",
    )
    with reading_weights(f"--student {name_or_path!r}", "pass a complete MiniAlbert folder (copy it again)."):
        return MiniAlbertForMaskedLM.from_pretrained(name_or_path)


def run_distillation(
    student_arguments: StudentArguments,
    conversion_arguments: ConversionArguments,
    data_arguments: DataArguments,
    training_arguments: DistillationArguments,
    output_arguments: OutputArguments | None = None,
) -> dict:
    """`minialbert distill`: convert (or load) a student, distil it with `DistillationTrainer`, save it Hub-ready
    and write `distillation_summary.json` beside it. Returns the summary as written there
    (`DistillationSummary.to_dict()`)."""
    check_fsdp_device(training_arguments)
    # The output folder first, in a second: checked and locked before the corpus or the teacher is loaded.
    output = prepare_training_output(
        training_arguments.output_dir,
        (output_arguments or OutputArguments()).overwrite_output_dir,
        training_arguments.process_index == 0,
        run_options(student_arguments, conversion_arguments, data_arguments, training_arguments),
    )
    with output:
        if output.finished:
            return finished_summary(output)
        return distill_into(output, student_arguments, conversion_arguments, data_arguments, training_arguments)


def finished_summary(output: TrainingOutput) -> dict:
    """The summary of the finished job `output` holds, which a rerun of its command leaves as it is."""
    summary = DistillationSummary.read(output.output_dir)
    if summary is None:
        raise BadInputError(
            f"{output.output_dir} holds a finished job without its {DistillationSummary.FILE_NAME}; pass "
            "--overwrite_output_dir to distil again, or choose another folder."
        )
    logger.info(
        "%s holds the finished student of this command (%d steps): nothing to do. Raise --max_steps to train it "
        "longer, or pass --overwrite_output_dir to start over.",
        output.output_dir,
        summary.global_step,
    )
    return summary.to_dict()


def distill_into(
    output: TrainingOutput,
    student_arguments: StudentArguments,
    conversion_arguments: ConversionArguments,
    data_arguments: DataArguments,
    training_arguments: DistillationArguments,
) -> dict:
    """`run_distillation` once its output folder is locked."""
    started = time.perf_counter()
    with training_arguments.main_process_first(desc="Reading the corpus"):
        corpus = load_text_corpus(data_arguments)
    teacher_name = student_arguments.teacher or bundled_teacher_path()
    teacher = load_teacher(teacher_name, conversion_arguments.revision)
    positions = teacher.bert.config.max_position_embeddings
    if data_arguments.max_seq_length > positions:
        raise BadInputError(
            f"--max_seq_length {data_arguments.max_seq_length} is longer than the teacher's {positions} positions; "
            f"pass --max_seq_length {positions} or less."
        )
    # Seeded before the student is built: its new adapters are drawn at random, and `--seed` must reproduce them.
    (enable_full_determinism if training_arguments.full_determinism else set_seed)(training_arguments.seed)
    if student_arguments.student:
        student = load_student(student_arguments.student)
        tokenizer = load_tokenizer(
            student_arguments.student,
            f"--student {student_arguments.student!r}",
            "Pass a student folder with its tokenizer: save the student's tokenizer into that folder "
            "(tokenizer.save_pretrained).",
        )
    else:
        if training_arguments.layer_map and not conversion_arguments.teacher_layer_map:
            conversion_arguments = replace(conversion_arguments, teacher_layer_map=training_arguments.layer_map)
        student = convert_bert_to_minialbert(teacher, conversion_arguments)
        tokenizer = load_tokenizer(
            conversion_arguments.tokenizer or teacher_name,
            "--tokenizer" if conversion_arguments.tokenizer else "The teacher",
            TEACHER_TOKENIZER_FIX,
        )

    if data_arguments.sentence_samples is None:
        # Sentence-embedding users encode single sentences: train on them too when the student follows embeddings.
        # Derived into a copy: the caller's arguments stay as they were.
        data_arguments = replace(
            data_arguments, sentence_samples=recipe_name(training_arguments, teacher) == "sentence"
        )
    with training_arguments.main_process_first(desc="Tokenising the corpus"):
        windows = tokenize_windows(corpus, tokenizer, data_arguments)
    trainer = DistillationTrainer(
        teacher,
        student,
        training_arguments,
        train_dataset=windows["train"],
        eval_dataset=windows["validation"],
        processing_class=tokenizer,
    )
    held_out = held_out_sets(
        windows["validation"],
        tokenizer,
        batch_size=training_arguments.per_device_eval_batch_size,
        mlm_probability=training_arguments.mlm_probability,
        seed=data_arguments.split_seed,
        broad_sentences=data_arguments.broad_eval_sentences,
        held_out_share=data_arguments.validation_split_percentage / 100,
    )
    broad = {source: texts for source, texts in held_out.sentences.items() if source != "python_reference"}
    layers = trainer.layer_map
    before = agreement_report(
        student.to(training_arguments.device), trainer.teacher, held_out.masked_windows, layers, held_out.sentence_sets
    )
    trainer.add_callback(SentenceAgreementCallback(trainer, held_out.agreement_sets()))
    tokens_per_window = sum(map(sum, windows["train"]["attention_mask"])) / len(windows["train"])
    samples_per_step = training_arguments.train_batch_size * training_arguments.gradient_accumulation_steps
    samples_per_step *= training_arguments.world_size
    # Training, saving and the summary happen in the output's working folder, put in place once all succeeded.
    with output.writing(trainer):
        output.train(trainer, training_arguments.resume_from_checkpoint)
        train_seconds = output.record.elapsed()  # every segment's, this one's included
        distilled = trainer.accelerator.unwrap_model(trainer.model)
        after = agreement_report(distilled, trainer.teacher, held_out.masked_windows, layers, held_out.sentence_sets)
        summary = DistillationSummary(
            teacher=teacher_name,
            teacher_parameters=teacher.bert.num_parameters(),
            student_parameters=student.num_parameters(),
            layer_map=layers,
            recipe=trainer.recipe,
            bf16_autocast=training_arguments.bf16,
            train_samples=len(windows["train"]),
            held_out_windows=len(windows["validation"]),
            out_of_domain_sentences=len(held_out.sentences["python_reference"]),
            broad_held_out_sentences={source: len(texts) for source, texts in broad.items()},
            trained_on_sources=sorted(set(data_arguments.corpus_weights() or ()) & set(broad)),
            global_step=trainer.state.global_step,
            processes=training_arguments.world_size,
            train_runtime_seconds=train_seconds,
            train_tokens_per_second=round(
                trainer.state.global_step * samples_per_step * tokens_per_window / max(train_seconds, 0.1)
            ),
            resumed_from_steps=output.record.resumed_from_steps,
            at_initialisation=before,
            after_distillation=after,
            agreement_by_depth=agreement_by_depth(distilled, trainer.teacher, held_out.agreement_sets()),
            agreement_curve=[
                {key.removeprefix("agreement_"): value for key, value in entry.items()}
                for entry in trainer.state.log_history
                if "agreement_sentence_spearman" in entry
            ],
            teacher_figures={
                name.removeprefix("teacher_"): value for name, value in before.items() if name.startswith("teacher_")
            },
            wall_clock_seconds=round(time.perf_counter() - started, 1),
            machine=machine(),
        )

        def write(folder: Path) -> None:
            # `_internal_call`: --push_to_hub uploads the output folder once the result is in it (below), not now.
            trainer.save_model(str(folder), _internal_call=True)
            if trainer.is_world_process_zero():
                if trainer.sentence_modules is not None:
                    save_sentence_modules(trainer.sentence_modules, folder, student.config.hidden_size)
                summary.save(folder)

        # Scored first, written last: a stop before this point leaves no student at the top of the folder.
        output.write_result(write)
        if training_arguments.push_to_hub:
            trainer.push_to_hub(commit_message="Model save", revision=training_arguments.hub_revision)
    return summary.to_dict()


def format_summary(summary: dict) -> str:
    """A `run_distillation` summary as `minialbert distill` prints it."""
    return DistillationSummary.from_dict(summary).describe()
