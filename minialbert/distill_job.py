"""`minialbert distill`: convert (or load) a student, distil it with `DistillationTrainer` on a corpus, save it
Hub-ready (with the teacher's sentence-transformers modules where it has them), and report how closely it follows
the teacher before and after, in `distillation_summary.json` and in print.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, enable_full_determinism, set_seed

from .convert import ConversionArguments, convert_bert_to_minialbert, load_teacher
from .data import (
    DataArguments,
    broad_held_out_sentences,
    bundled_teacher_path,
    load_text_corpus,
    python_docs_sentences,
    tokenize_windows,
)
from .distillation import (
    DistillationArguments,
    DistillationTrainer,
    SentenceAgreementCallback,
    agreement_by_depth,
    agreement_report,
    check_fsdp_device,
    held_out_batches,
    recipe_name,
    sentence_batches,
)
from .folders import (
    OutputArguments,
    TrainingOutput,
    prepare_training_output,
    read_minialbert_config,
    reading_weights,
    train,
)
from .modeling_minialbert import MiniAlbertForMaskedLM
from .sentence_embeddings import save_sentence_modules

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


def load_tokenizer(name_or_path: str, subject: str) -> PreTrainedTokenizerBase:
    fix = "save the student's tokenizer into that folder (tokenizer.save_pretrained)."
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{subject} has no tokenizer that loads ({error}); {fix}") from error
    # transformers builds an empty tokenizer (special tokens only) from a folder without tokenizer files.
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise ValueError(f"{subject} has no tokenizer files (no vocabulary beyond special tokens); {fix}")
    return tokenizer


def held_out_sets(
    validation_windows, tokenizer, data_arguments: DataArguments, training_arguments: DistillationArguments
) -> tuple[list[dict], dict[str, list[dict]], dict[str, list[str]]]:
    """What `distill` scores the student on: the held-out windows masked once with a fixed seed, and unmasked
    sentence batches of other sources: the Python reference (never trained on) and the held-out parts of the broad
    corpus sources (in domain for the sources of --corpus, out of domain for the others), returned too by source
    (`python_reference` and the broad sources' names)."""
    batches = held_out_batches(
        validation_windows,
        tokenizer,
        training_arguments.mlm_probability,
        data_arguments.split_seed,
        training_arguments.per_device_eval_batch_size,
    )
    sentences = {"python_reference": python_docs_sentences()} | broad_held_out_sentences(data_arguments)
    sentence_sets = {
        name: sentence_batches(tokenizer, texts, training_arguments.per_device_eval_batch_size)
        for name, texts in {
            "ood_sentence_spearman": sentences["python_reference"],
            "broad_sentence_spearman": [text for source, texts in sentences.items() if source != "python_reference"
                                        for text in texts],
        }.items()
        if texts
    }  # fmt: skip
    return batches, sentence_sets, sentences


def run_distillation(
    student_arguments: StudentArguments,
    conversion_arguments: ConversionArguments,
    data_arguments: DataArguments,
    training_arguments: DistillationArguments,
    output_arguments: OutputArguments | None = None,
) -> dict:
    """`minialbert distill`: convert (or load) a student, distil it with `DistillationTrainer`, save it Hub-ready
    and write `distillation_summary.json` beside it. Returns the summary."""
    check_fsdp_device(training_arguments)
    # The output folder first, in a second: checked and locked before the corpus or the teacher is loaded.
    output = prepare_training_output(
        training_arguments.output_dir,
        (output_arguments or OutputArguments()).overwrite_output_dir,
        training_arguments.process_index == 0,
    )
    with output:
        return distill_into(output, student_arguments, conversion_arguments, data_arguments, training_arguments)


def distill_into(
    output: TrainingOutput,
    student_arguments: StudentArguments,
    conversion_arguments: ConversionArguments,
    data_arguments: DataArguments,
    training_arguments: DistillationArguments,
) -> dict:
    """`run_distillation` once its output folder is locked."""
    with training_arguments.main_process_first(desc="Reading the corpus"):
        corpus = load_text_corpus(data_arguments)
    teacher_name = student_arguments.teacher or bundled_teacher_path()
    teacher = load_teacher(teacher_name, conversion_arguments.revision)
    positions = teacher.bert.config.max_position_embeddings
    if data_arguments.max_seq_length > positions:
        raise ValueError(
            f"--max_seq_length {data_arguments.max_seq_length} is longer than the teacher's {positions} positions; "
            f"pass --max_seq_length {positions} or less."
        )
    # Seeded before the student is built: its new adapters are drawn at random, and `--seed` must reproduce them.
    (enable_full_determinism if training_arguments.full_determinism else set_seed)(training_arguments.seed)
    if student_arguments.student:
        student = load_student(student_arguments.student)
        tokenizer = load_tokenizer(student_arguments.student, f"--student {student_arguments.student!r}")
    else:
        if training_arguments.layer_map and not conversion_arguments.teacher_layer_map:
            conversion_arguments.teacher_layer_map = training_arguments.layer_map
        student = convert_bert_to_minialbert(teacher, conversion_arguments)
        tokenizer = AutoTokenizer.from_pretrained(conversion_arguments.tokenizer or teacher_name)

    if data_arguments.sentence_samples is None:
        # Sentence-embedding users encode single sentences: train on them too when the student follows embeddings.
        data_arguments.sentence_samples = recipe_name(training_arguments, teacher) == "sentence"
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
    batches, sentence_sets, sentences = held_out_sets(
        windows["validation"], tokenizer, data_arguments, training_arguments
    )
    out_of_domain = sentences.pop("python_reference")
    broad = sentences
    layers = trainer.layer_map
    before = agreement_report(student.to(training_arguments.device), trainer.teacher, batches, layers, sentence_sets)
    unmasked = [trainer.unmasked(batch) for batch in batches]
    trainer.add_callback(SentenceAgreementCallback(trainer, {"sentence_spearman": unmasked} | sentence_sets))
    tokens_per_window = sum(map(sum, windows["train"]["attention_mask"])) / len(windows["train"])
    # Training, saving and the summary happen in the output's working folder, put in place once all succeeded.
    with output.writing(trainer):
        result = train(trainer, training_arguments.resume_from_checkpoint or output.resume_from)
        distilled = trainer.accelerator.unwrap_model(trainer.model)
        after = agreement_report(distilled, trainer.teacher, batches, layers, sentence_sets)
        by_depth = agreement_by_depth(distilled, trainer.teacher, {"sentence_spearman": unmasked} | sentence_sets)
        summary = {
            "teacher": teacher_name,
            "teacher_parameters": teacher.bert.num_parameters(),
            "student_parameters": student.num_parameters(),
            "layer_map": layers,
            "recipe": asdict(trainer.recipe),
            "bf16_autocast": training_arguments.bf16,
            "train_samples": len(windows["train"]),
            "held_out_windows": len(windows["validation"]),
            "out_of_domain_sentences": len(out_of_domain),
            # broad_sentence_spearman: these sources' held-out sentences, pooled; which of them the corpus trained on.
            "broad_held_out_sentences": {source: len(sentences) for source, sentences in broad.items()},
            "trained_on_sources": sorted(set(data_arguments.corpus_weights() or ()) & set(broad)),
            "global_step": trainer.state.global_step,
            "processes": training_arguments.world_size,
            "train_runtime_seconds": round(result.metrics["train_runtime"], 1),
            "train_tokens_per_second": round(result.metrics["train_samples_per_second"] * tokens_per_window),
            "at_initialisation": before,
            "after_distillation": after,
            # Each depth a user may load the student at (num_recursions), scored on the same sentences.
            "agreement_by_depth": by_depth,
            "agreement_curve": [
                {key.removeprefix("agreement_"): value for key, value in entry.items()}
                for entry in trainer.state.log_history
                if "agreement_sentence_spearman" in entry
            ],
            # The teacher's own scores, where one exists (masked-LM accuracy, with a head): the report has them.
            "teacher_figures": {
                name.removeprefix("teacher_"): value for name, value in before.items() if name.startswith("teacher_")
            },
        }

        def write(folder: Path) -> None:
            # `_internal_call`: --push_to_hub uploads the output folder once the result is in it (below), not now.
            trainer.save_model(str(folder), _internal_call=True)
            if trainer.is_world_process_zero():
                if trainer.sentence_modules is not None:
                    save_sentence_modules(trainer.sentence_modules, folder, student.config.hidden_size)
                Path(folder, "distillation_summary.json").write_text(json.dumps(summary, indent=2))

        # Scored first, written last: a stop before this point leaves no student at the top of the folder.
        output.write_result(write)
        if training_arguments.push_to_hub:
            trainer.push_to_hub(commit_message="Model save", revision=training_arguments.hub_revision)
    return summary


def format_summary(summary: dict) -> str:
    recipe = summary["recipe"]
    terms = ", ".join(f"{name} {weight:g}" for name, weight in recipe["weights"].items() if weight)
    lines = [
        f"teacher {summary['teacher']}: {summary['teacher_parameters'] / 1e6:.2f}M parameters; "
        f"student: {summary['student_parameters'] / 1e6:.2f}M; layer map {summary['layer_map']}",
        f"recipe {recipe['name']!r} ({recipe['reason']}): {terms}; hidden {recipe['hidden_loss']} on "
        f"{recipe['hidden_layers']} mapped layers, sentence {recipe['sentence_loss']} of {recipe['sentence_pooling']} "
        f"pooling, relational {recipe['relational_loss']}, on {recipe['distill_inputs']} input; elastic depth "
        f"{recipe['elastic_depth']} {recipe['depth_weights'] or ''}; bf16 autocast "
        f"{'on' if summary['bf16_autocast'] else 'off'}",
        f"{summary['global_step']} steps on {summary['train_samples']} training samples in "
        f"{summary['train_runtime_seconds']} s ({summary['train_tokens_per_second']} tokens/s); held-out: "
        f"{summary['held_out_windows']} windows, {summary['out_of_domain_sentences']} out-of-domain sentences, "
        f"{sum(summary['broad_held_out_sentences'].values())} sentences of the broad sources "
        f"({', '.join(summary['broad_held_out_sentences']) or 'none'}; trained on: "
        f"{', '.join(summary['trained_on_sources']) or 'none'})",
        f"{'metric':<22} {'initialisation':>14} {'distilled':>10} {'teacher':>8}",
    ]
    teacher = {f"teacher_{name}": value for name, value in summary["teacher_figures"].items()}
    for name, value in summary["after_distillation"].items():
        if name.startswith("teacher_"):
            continue
        own = teacher.get(name.replace("student_", "teacher_"), "")
        own = f"{own:>8.4f}" if own != "" else f"{'':>8}"
        lines.append(f"{name:<22} {summary['at_initialisation'][name]:>14.4f} {value:>10.4f} {own}")
    for scores in summary["agreement_by_depth"]:
        depth = scores["num_recursions"]
        figures = ", ".join(f"{name} {value:.4f}" for name, value in scores.items() if name != "num_recursions")
        lines.append(f"at {depth} recursion{'s' if depth > 1 else ''}: {figures}")
    return "\n".join(lines)
