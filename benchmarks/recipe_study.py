"""Ablation of the distillation recipe on the bundled teacher (all-MiniLM-L6-v2): loss terms, corpus mixes
(`minialbert.corpora`), batch shapes and student capacity.

Every variant trains a freshly converted student for the same wall-clock budget (a linear learning-rate schedule
over that time, 6% warm-up, then stop), and is scored by `agreement_report` on three held-out sets: 256 BBC News
validation windows of 128 tokens (masked once with a fixed seed), 256 short sentences from the Python language
reference (`python_docs_sentences`, a source no variant trains on), and 64 held-out sentences of each broad corpus
source (`broad_held_out_sentences`): their mean over the sources a variant trained on ("broad, seen") and over the
others ("broad, unseen") are reported apart, as only the latter are out of domain. A recipe that wins on BBC and not
elsewhere is not better. Steps/s and real (non-padding) tokens/s are measured in the same run.

    python benchmarks/recipe_study.py --stage screen   # every variant, 120 s of training each
    python benchmarks/recipe_study.py --stage full --variant "cosine, lr 1e-3"   # the main job's budget
    python benchmarks/recipe_study.py --table          # print the table of what benchmarks/recipe_study.json holds

Results are kept per (stage, variant) in benchmarks/recipe_study.json as soon as each variant finishes; a rerun
skips finished ones (--rerun repeats them), so the study can run across sessions.
"""

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch
import transformers
from torch.optim.lr_scheduler import LambdaLR
from transformers import AutoTokenizer, TrainerCallback

from minialbert import ConversionArguments, convert_bert_to_minialbert
from minialbert.data import DataArguments, load_text_corpus, tokenize_windows
from minialbert.distillation import (
    DistillationArguments,
    DistillationTrainer,
    agreement_report,
)
from minialbert.held_out import broad_held_out_sentences, held_out_batches, python_docs_sentences
from minialbert.sentence_embeddings import sentence_batches
from minialbert.teacher import bundled_teacher_path, load_teacher

RESULTS = Path(__file__).with_name("recipe_study.json")
STAGES = {"screen": 120.0, "full": 600.0, "long": 1800.0}  # seconds of training per variant

# The study's own baseline, spelled out so that later changes of the "sentence" recipe's defaults do not move it.
BBC_ONLY = {"data.corpus": "bbc", "data.corpus_samples": 0}  # every BBC sample, as before the corpus mixes
PAPER = BBC_ONLY | {"recipe": "paper"}
BASE = BBC_ONLY | {
    "recipe": "sentence",
    "hidden_weight": 1.0,
    "sentence_weight": 1.0,
    "hidden_loss": "mse",
    "hidden_layers": "all",
    "sentence_loss": "mse",
    "distill_inputs": "unmasked",
}
COSINE = BASE | {"hidden_loss": "cosine", "sentence_loss": "cosine"}
GROUPED = COSINE | {"data.sentence_samples": True, "train_sampling_strategy": "group_by_length"}
MIX = GROUPED | {
    "data.corpus": "bbc,wordnet,gcide,foldoc,fortunes,shakespeare,linux_docs",
    "data.corpus_samples": 40_000,
}
# name -> overrides of DistillationArguments, DataArguments ("data.") and ConversionArguments ("convert.").
VARIANTS = {
    "hidden mse + sentence mse, unmasked (base)": BASE,
    "base, sentence cosine": BASE | {"sentence_loss": "cosine"},
    "base, hidden and sentence cosine": BASE | {"hidden_loss": "cosine", "sentence_loss": "cosine"},
    "base, sentence x10": BASE | {"sentence_weight": 10.0},
    "base, no hidden term": BASE | {"hidden_weight": 0.0},
    "base, no sentence term": BASE | {"sentence_weight": 0.0},
    "base, hidden cosine": BASE | {"hidden_loss": "cosine"},
    "base, hidden last layer only": BASE | {"hidden_layers": "last"},
    "base, masked input": BASE | {"distill_inputs": "masked"},
    "base, + MLM 0.5": BASE | {"mlm_weight": 0.5},
    "base, + attention KL 1": BASE | {"attention_weight": 1.0},
    "base, + embedding cosine 1": BASE | {"embedding_weight": 1.0},
    "paper": PAPER,
    "paper, no MLM": PAPER | {"mlm_weight": 0.0},
    "paper, no MLM, unmasked": PAPER | {"mlm_weight": 0.0, "distill_inputs": "unmasked"},
    "base, lr 1e-3": BASE | {"learning_rate": 1e-3},
    "base, lr 2e-4": BASE | {"learning_rate": 2e-4},
    "base, batch 32": BASE | {"per_device_train_batch_size": 32},
    "base, windows of 64": BASE | {"data.max_seq_length": 64, "data.stride": 16},
    "base, no warm-up": BASE | {"warmup_steps": 0.0},
    "base, fp32": BASE | {"auto_bf16": False},
    "base, length-grouped batches": BASE | {"train_sampling_strategy": "group_by_length"},
    "base, init stepwise": BASE | {"convert.init": "stepwise"},
    "base, 6 recursions": BASE | {"convert.num_recursions": 6},
    # Second round, from the best of the first: cosine hidden-state and sentence terms.
    "cosine, + sentence samples": COSINE | {"data.sentence_samples": True},
    "cosine, + sentence samples, length-grouped": GROUPED,
    "cosine, sentence x3": COSINE | {"sentence_weight": 3.0},
    "cosine, lr 1e-3": COSINE | {"learning_rate": 1e-3},
    # Third round: capacity of the student, from the best of the second.
    "grouped sentences, 6 recursions": GROUPED | {"convert.num_recursions": 6},
    "grouped sentences, adapters 1/4": GROUPED | {"convert.adapter_reduction_factor": 4},
    "grouped sentences, relaxed rank 32": GROUPED | {"convert.recursion_lora_rank": 32},
    "grouped sentences, relaxed rank 96": GROUPED | {"convert.recursion_lora_rank": 96},
    # Fourth round: broad text beside BBC News, the in-batch relational loss, batch shape.
    "mix: BBC only (round-4 reference)": GROUPED,
    "mix: all sources": MIX,
    "mix: all but Linux docs": MIX | {"data.corpus": MIX["data.corpus"].replace(",linux_docs", "")},
    "mix, relational mse 1": MIX | {"relational_weight": 1.0},
    "mix, relational mse 10": MIX | {"relational_weight": 10.0},
    "mix, relational kl 1": MIX | {"relational_weight": 1.0, "relational_loss": "kl"},
    "mix, relational mse 10, batch 32": MIX | {"relational_weight": 10.0, "per_device_train_batch_size": 32},
    "mix, relational mse 10, no hidden term": MIX | {"relational_weight": 10.0, "hidden_weight": 0.0},
    "mix, relational mse 10, relaxed rank 96": MIX | {"relational_weight": 10.0, "convert.recursion_lora_rank": 96},
    "mix, relational mse 1, BBC weight 3": MIX
    | {"relational_weight": 1.0, "data.corpus": MIX["data.corpus"].replace("bbc", "bbc:3")},
    "mix, relational mse 1, relaxed rank 96": MIX | {"relational_weight": 1.0, "convert.recursion_lora_rank": 96},
    "mix, relational mse 1, E=384 (the teacher's embeddings)": MIX
    | {"relational_weight": 1.0, "convert.embedding_size": 384},
    "mix, relational mse 1, hidden last layer only": MIX | {"relational_weight": 1.0, "hidden_layers": "last"},
    "mix, BBC weight 3, relaxed rank 96": MIX
    | {"data.corpus": MIX["data.corpus"].replace("bbc", "bbc:3"), "convert.recursion_lora_rank": 96},
    "mix, BBC weight 3, relaxed rank 96, relational mse 1": MIX
    | {
        "data.corpus": MIX["data.corpus"].replace("bbc", "bbc:3"),
        "convert.recursion_lora_rank": 96,
        "relational_weight": 1.0,
    },
}


class TimeBudget(TrainerCallback):
    """Stop training once `seconds` of it have passed."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.start >= self.seconds:
            control.should_training_stop = True

    def fraction(self) -> float:
        return 0.0 if self.start is None else min(1.0, (time.perf_counter() - self.start) / self.seconds)


class BudgetedSchedule:
    """A `Trainer` mixin: linear warm-up and decay over wall-clock time instead of steps, so every variant gets the
    whole schedule within the same budget however fast its steps are."""

    def __init__(self, *args, budget: TimeBudget, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.add_callback(budget)

    def create_scheduler(self, num_training_steps, optimizer=None):
        warmup = 0.06 if self.args.warmup_steps else 0.0

        def factor(_step: int) -> float:
            done = self.budget.fraction()
            return done / warmup if done < warmup else max(0.0, (1 - done) / (1 - warmup))

        self.lr_scheduler = LambdaLR(optimizer or self.optimizer, factor)
        return self.lr_scheduler

    def training_progress(self) -> float:
        # The depth schedule of `DistillationTrainer` reads the share of the budget spent, not of max_steps.
        return self.budget.fraction()


class BudgetedTrainer(BudgetedSchedule, DistillationTrainer):
    """`DistillationTrainer` on a wall-clock schedule."""


def budgeted_arguments(output_dir: Path | str, **overrides) -> DistillationArguments:
    """The study's training arguments: no checkpoints or reports; the time budget, not a step count, stops it."""
    return DistillationArguments(
        output_dir=str(output_dir),
        max_steps=1_000_000,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=50,
        dataloader_pin_memory=False,
        **overrides,
    )


def split_overrides(overrides: dict) -> tuple[dict, dict, dict]:
    training, data, conversion = {}, {}, {}
    for key, value in overrides.items():
        target = data if key.startswith("data.") else conversion if key.startswith("convert.") else training
        target[key.split(".", 1)[-1]] = value
    return training, data, conversion


def run_variant(name: str, seconds: float, teacher, tokenizer, evaluation, output_dir: Path) -> dict:
    training, data, conversion = split_overrides(VARIANTS[name])
    data_arguments = DataArguments(**data)
    windows = tokenize_windows(load_text_corpus(data_arguments), tokenizer, data_arguments)
    torch.manual_seed(0)
    # The study's variants name what they change from the paper-shaped student it ran on.
    student = convert_bert_to_minialbert(teacher, ConversionArguments(**{"student_shape": "paper"} | conversion))
    arguments = budgeted_arguments(output_dir, seed=0, include_num_input_tokens_seen="non_padding", **training)
    budget = TimeBudget(seconds)
    trainer = BudgetedTrainer(
        teacher, student, arguments, train_dataset=windows["train"], processing_class=tokenizer, budget=budget
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    held_out, sentences, broad = evaluation
    # agreement_report scores each named sentence set: the Python reference and each broad source's sentences.
    sets = {"ood_sentence_spearman": sentences} | {f"broad:{source}": batches for source, batches in broad.items()}
    report = agreement_report(student, trainer.teacher, held_out, student.config.teacher_layer_map, sets)
    by_source = {name.removeprefix("broad:"): report.pop(name) for name in list(report) if name.startswith("broad:")}
    seen = set(data_arguments.corpus_weights() or ())
    return {
        "overrides": VARIANTS[name],
        "recipe": trainer.recipe.name,
        "weights": {loss: weight for loss, weight in trainer.weights().items() if weight},
        "bf16_autocast": arguments.bf16,
        "budget_seconds": seconds,
        "train_seconds": round(wall, 1),
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 3),
        "steps_per_second": round(trainer.state.global_step / wall, 3),
        "tokens_per_second": round(trainer.state.num_input_tokens_seen / wall),
        **report,
        "broad_by_source": by_source,
        "broad_seen": mean([value for source, value in by_source.items() if source in seen]),
        "broad_unseen": mean([value for source, value in by_source.items() if source not in seen]),
    }


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def in_round(name: str, round_name: str | None) -> bool:
    """Rounds 1-3 studied the loss terms and capacity on BBC News alone; round 4 (variants named `mix...`) the
    corpus mixes, the relational loss and batch shapes, scored on all three held-out sets."""
    return round_name is None or (round_name == "4") == name.startswith("mix")


def table(results: dict, round_name: str | None = None) -> str:
    def cell(value) -> str:
        return "" if value is None else f"{value:.4f}" if isinstance(value, float) else f"{value}"

    rows = [
        "| stage | variant | BBC sentence_spearman | Python-reference sentence_spearman | broad, seen | broad, unseen "
        "| hidden_cosine | attention_kl | MLM accuracy | steps | steps/s | tokens/s | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in STAGES:
        ranked = sorted(
            ((name, row) for name, row in results.get(stage, {}).items() if in_round(name, round_name)),
            key=lambda item: -(item[1]["sentence_spearman"] + item[1]["ood_sentence_spearman"]),
        )
        for name, row in ranked:
            rows.append(
                f"| {stage} | {name} | {row['sentence_spearman']:.4f} | {row['ood_sentence_spearman']:.4f} | "
                f"{cell(row.get('broad_seen'))} | {cell(row.get('broad_unseen'))} | {row['hidden_cosine']:.4f} | "
                f"{row['attention_kl']:.4f} | {row['student_mlm_accuracy']:.4f} | "
                f"{row['steps']} | {cell(row.get('steps_per_second'))} | {cell(row.get('tokens_per_second'))} | "
                f"{row['train_seconds']:.0f} |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=STAGES, default="screen")
    parser.add_argument("--variant", action="append", help="A variant to run; repeat for several (default: all).")
    parser.add_argument("--rerun", action="store_true", help="Run variants that already have a result again.")
    parser.add_argument("--table", action="store_true", help="Only print the table of stored results.")
    parser.add_argument("--round", choices=("1-3", "4"), help="With --table: only the variants of these rounds.")
    parser.add_argument("--output_dir", default="outputs/recipe_study", help="Scratch folder for the runs.")
    arguments = parser.parse_args()
    results = load_results()
    if arguments.table:
        print(table(results, arguments.round))
        return
    names = arguments.variant or list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"Unknown variants {unknown}; known: {list(VARIANTS)}")
    logging.basicConfig(level=logging.WARNING)

    teacher_path = bundled_teacher_path()
    teacher = load_teacher(teacher_path)
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    # Fixed held-out sets, whatever the variant's mix and window length: BBC windows of 128 tokens, Python-docs
    # sentences, and the held-out sentences of each broad source.
    bbc = DataArguments(corpus="bbc", corpus_samples=0)
    held_out = tokenize_windows(load_text_corpus(bbc), tokenizer, bbc)["validation"]
    evaluation = (
        held_out_batches(held_out, tokenizer, 0.15, seed=42, batch_size=64),
        sentence_batches(tokenizer, python_docs_sentences(), 64),
        {source: sentence_batches(tokenizer, texts, 64) for source, texts in broad_held_out_sentences().items()},
    )

    stage = results.setdefault(arguments.stage, {})
    results["machine"] = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name in names:
        if name in stage and not arguments.rerun:
            continue
        print(f"[{arguments.stage}] {name} ...", flush=True)
        stage[name] = run_variant(
            name, STAGES[arguments.stage], teacher, tokenizer, evaluation, Path(arguments.output_dir)
        )
        print(json.dumps(stage[name]), flush=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
