"""What `minialbert distill` does, spelled out with the library, as a starting point for your own recipe.

Convert a BERT teacher, cut a corpus into masked-LM windows, distil with `DistillationTrainer` (the stock
Trainer plus the paper's losses), save a Hub-ready student. As a worked change of recipe, `--sentence_weight`
adds a loss the paper does not have: the cosine distance between the mean-pooled last hidden states of student
and teacher (the bundled teacher is a sentence-embedding model, so this is the quantity its users care about).

    python examples/run_distillation.py --output_dir outputs/my-student --max_steps 200
    python examples/run_distillation.py --teacher bert-base-uncased --train_files my_corpus/ \\
        --output_dir outputs/bert-student --sentence_weight 1.0 --bf16
"""

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F
from transformers import AutoTokenizer, HfArgumentParser

from minialbert import ConversionArguments, convert_bert_to_minialbert
from minialbert.convert import load_teacher
from minialbert.data import DataArguments, bundled_teacher_path, load_text_corpus, tokenize_windows
from minialbert.distillation import DistillationArguments, DistillationTrainer, mean_pool


@dataclass
class RecipeArguments:
    teacher: str | None = field(default=None, metadata={"help": "BERT folder or Hub id (default: bundled)."})
    sentence_weight: float = field(default=0.0, metadata={"help": "Weight of the mean-pooled sentence cosine loss."})


class SentenceDistillationTrainer(DistillationTrainer):
    """The paper's losses plus a sentence-embedding term: override `weights` and `distillation_losses`."""

    def __init__(self, *args, sentence_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sentence_weight = sentence_weight

    def weights(self) -> dict[str, float]:
        return super().weights() | {"sentence": self.sentence_weight}

    def distillation_losses(self, model, inputs):
        losses = super().distillation_losses(model, inputs)
        if self.sentence_weight > 0:
            # A second, unmasked pass of both models: mean-pooled last layers should point the same way.
            real = inputs["attention_mask"].bool()
            student = model.minialbert(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            with torch.no_grad():
                teacher = self.teacher.bert(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            pooled_student = mean_pool(student.last_hidden_state, real)
            pooled_teacher = mean_pool(teacher.last_hidden_state, real)
            losses["sentence"] = 1 - F.cosine_similarity(pooled_student.float(), pooled_teacher.float()).mean()
        return losses


def main() -> None:
    parser = HfArgumentParser((RecipeArguments, ConversionArguments, DataArguments, DistillationArguments))
    recipe, conversion, data, training = parser.parse_args_into_dataclasses()

    teacher_name = recipe.teacher or bundled_teacher_path()
    teacher = load_teacher(teacher_name)
    student = convert_bert_to_minialbert(teacher, conversion)
    tokenizer = AutoTokenizer.from_pretrained(teacher_name)
    windows = tokenize_windows(load_text_corpus(data), tokenizer, data)

    trainer = SentenceDistillationTrainer(
        teacher,
        student,
        training,
        train_dataset=windows["train"],
        eval_dataset=windows["validation"],
        processing_class=tokenizer,
        sentence_weight=recipe.sentence_weight,
    )
    trainer.train()
    trainer.save_model()  # config, both code files, weights and tokenizer: ready for `minialbert push`
    metrics = trainer.evaluate()
    trainer.save_metrics("eval", metrics)
    print({name: round(value, 4) for name, value in metrics.items() if name.endswith("_loss")})


if __name__ == "__main__":
    main()
