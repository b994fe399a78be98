"""What `minialbert distill` does, spelled out with the library, as a starting point for your own recipe.

Convert a BERT teacher, cut a corpus into windows, distil with `DistillationTrainer` (the stock Trainer plus the
recipe's losses, `--recipe` and every `minialbert distill` loss option), save a Hub-ready student. As a worked
change of recipe, `--contrastive_weight` adds a loss `minialbert` does not have: an in-batch contrastive loss
(InfoNCE) that asks each window's student sentence embedding to be closer to its own teacher embedding than to
the teacher embeddings of the other windows in the batch.

    python examples/run_distillation.py --output_dir outputs/my-student --max_steps 200
    python examples/run_distillation.py --teacher bert-base-uncased --train_files my_corpus/ \\
        --output_dir outputs/bert-student --contrastive_weight 0.1 --bf16
"""

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F
from transformers import AutoTokenizer, HfArgumentParser, set_seed

from minialbert import ConversionArguments, convert_bert_to_minialbert
from minialbert.data import DataArguments, load_text_corpus, tokenize_windows
from minialbert.distillation import DistillationArguments, DistillationTrainer
from minialbert.sentence_embeddings import pool
from minialbert.teacher import bundled_teacher_path, load_teacher


@dataclass
class RecipeArguments:
    teacher: str | None = field(default=None, metadata={"help": "BERT folder or Hub id (default: bundled)."})
    contrastive_weight: float = field(default=0.0, metadata={"help": "Weight of the in-batch contrastive loss."})
    contrastive_temperature: float = field(default=0.05, metadata={"help": "Softmax temperature of that loss."})


class ContrastiveDistillationTrainer(DistillationTrainer):
    """The recipe's losses plus one more: override `weights` and `distillation_losses`."""

    def __init__(self, *args, contrastive_weight: float = 0.0, contrastive_temperature: float = 0.05, **kwargs):
        super().__init__(*args, **kwargs)
        self.contrastive_weight, self.contrastive_temperature = contrastive_weight, contrastive_temperature

    def weights(self) -> dict[str, float]:
        return super().weights() | {"contrastive": self.contrastive_weight}

    def distillation_losses(self, model, inputs):
        losses = super().distillation_losses(model, inputs)
        if self.contrastive_weight > 0:
            # One more unmasked pass of both models; row i of `similarities` should peak at column i.
            plain = {key: self.unmasked(inputs)[key] for key in ("input_ids", "attention_mask")}
            student = pool(model.minialbert(**plain).last_hidden_state, plain["attention_mask"])
            with torch.no_grad():
                teacher = pool(self.teacher.bert(**plain).last_hidden_state, plain["attention_mask"])
            similarities = F.normalize(student.float(), dim=-1) @ F.normalize(teacher.float(), dim=-1).T
            targets = torch.arange(len(similarities), device=similarities.device)
            losses["contrastive"] = F.cross_entropy(similarities / self.contrastive_temperature, targets)
        return losses


def main() -> None:
    parser = HfArgumentParser((RecipeArguments, ConversionArguments, DataArguments, DistillationArguments))
    recipe, conversion, data, training = parser.parse_args_into_dataclasses()
    set_seed(training.seed)  # before the student's adapters are drawn

    teacher_name = recipe.teacher or bundled_teacher_path()
    teacher = load_teacher(teacher_name)
    student = convert_bert_to_minialbert(teacher, conversion)
    tokenizer = AutoTokenizer.from_pretrained(teacher_name)
    windows = tokenize_windows(load_text_corpus(data), tokenizer, data)

    trainer = ContrastiveDistillationTrainer(
        teacher,
        student,
        training,
        train_dataset=windows["train"],
        eval_dataset=windows["validation"],
        processing_class=tokenizer,
        contrastive_weight=recipe.contrastive_weight,
        contrastive_temperature=recipe.contrastive_temperature,
    )
    trainer.train()
    trainer.save_model()  # config, both code files, weights and tokenizer: ready for `minialbert push`
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    print({name: round(value, 4) for name, value in metrics.items() if name.endswith("_loss")})


if __name__ == "__main__":
    main()
