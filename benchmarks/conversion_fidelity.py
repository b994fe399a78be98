"""How close a student converted from the teacher's weights alone (`calibration_samples=0`) is to its teacher,
for every shared-layer init, width and rank (the calibrated start: benchmarks/conversion_start.py).

    python benchmarks/conversion_fidelity.py [--articles 64] [--max_length 128]

On the bundled all-MiniLM-L6-v2 teacher and held-out BBC News articles (the test split of
`minialbert.corpora.bbc_news_splits`), for each shared-layer init, `embedding_size` in {128, 384} and
`recursion_lora_rank` in {0, 8, 64, 384 (full)}: the student's parameter count and its agreement with the
teacher at initialisation, as the mean cosine of the last hidden states at real tokens and of the
mean-pooled sentence embeddings (the teacher's own pooling). Writes benchmarks/conversion_fidelity.json
and prints the Markdown tables in docs/conversion.md.
"""

import argparse
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.nn.functional import cosine_similarity  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from minialbert.convert import ConversionArguments, convert_bert_to_minialbert  # noqa: E402
from minialbert.corpora import bbc_news_splits  # noqa: E402
from minialbert.teacher import (
    bundled_teacher_path,  # noqa: E402
    load_teacher,  # noqa: E402
)

EMBEDDING_SIZES = (128, 384)
RANKS = (0, 8, 64, 384)


def mean_pool(hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * weights).sum(1) / weights.sum(1)


@torch.no_grad()
def agreement(student, teacher_states: torch.Tensor, batch: dict) -> tuple[float, float]:
    mask = batch["attention_mask"]
    states = student.minialbert(**batch).last_hidden_state
    token = cosine_similarity(states, teacher_states, dim=-1)[mask.bool()].mean().item()
    sentence = cosine_similarity(mean_pool(states, mask), mean_pool(teacher_states, mask), dim=-1).mean().item()
    return token, sentence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=64)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    logging.getLogger("minialbert.convert").setLevel(logging.ERROR)  # the missing-MLM-head notice, once per row

    teacher_path = bundled_teacher_path()
    teacher = load_teacher(teacher_path)
    num_layers = teacher.bert.config.num_hidden_layers
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    texts = bbc_news_splits()["test"]["text"][: args.articles]
    batch = dict(tokenizer(texts, truncation=True, max_length=args.max_length, padding=True, return_tensors="pt"))
    with torch.no_grad():
        teacher_states = teacher.bert.eval()(**batch).last_hidden_state

    inits = ["stepwise", "average", "lower"] + [f"layer:{k}" for k in range(1, num_layers + 1)]
    rows = []
    for init in inits:
        for embedding_size in EMBEDDING_SIZES:
            for rank in RANKS:
                arguments = ConversionArguments(
                    embedding_size=embedding_size,
                    init=init,
                    recursion_lora_rank=rank,
                    calibration_samples=0,
                    student_shape="paper",  # evenly spaced layers, as every recorded row
                )
                student = convert_bert_to_minialbert(teacher.bert, arguments).eval()
                token, sentence = agreement(student, teacher_states, batch)
                rows.append(
                    {
                        "init": init,
                        "embedding_size": embedding_size,
                        "recursion_lora_rank": rank,
                        "parameters": student.minialbert.num_parameters(),
                        "token_cosine": round(token, 4),
                        "sentence_cosine": round(sentence, 4),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    args.output.write_text(json.dumps({"articles": len(texts), "max_length": args.max_length, "rows": rows}, indent=1))

    print("\nParameters (encoder, without the MLM head):\n")
    print("| embedding_size | " + " | ".join(f"rank {rank}" for rank in RANKS) + " |")
    print("|---:|" + "---:|" * len(RANKS))
    for embedding_size in EMBEDDING_SIZES:
        counts = {r["recursion_lora_rank"]: r["parameters"] for r in rows if r["embedding_size"] == embedding_size}
        print(f"| {embedding_size} | " + " | ".join(f"{counts[rank] / 1e6:.2f}M" for rank in RANKS) + " |")

    print("\nAgreement with the teacher at initialisation, token cosine / sentence cosine:\n")
    print("| init | E | " + " | ".join(f"rank {rank}" for rank in RANKS) + " |")
    print("|---|---:|" + "---|" * len(RANKS))
    for init in inits:
        for embedding_size in EMBEDDING_SIZES:
            cells = {
                r["recursion_lora_rank"]: f"{r['token_cosine']:.3f} / {r['sentence_cosine']:.3f}"
                for r in rows
                if r["init"] == init and r["embedding_size"] == embedding_size
            }
            print(f"| {init} | {embedding_size} | " + " | ".join(cells[rank] for rank in RANKS) + " |")


if __name__ == "__main__":
    main()
