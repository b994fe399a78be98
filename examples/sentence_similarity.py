"""Encode sentences with a distilled student and its teacher through sentence-transformers, as their users would,
and print how the student ranks sentence pairs next to the teacher.

    python examples/sentence_similarity.py outputs/student
    python examples/sentence_similarity.py outputs/student --teacher sentence-transformers/all-MiniLM-L6-v2

The student folder needs the sentence-transformers modules that `minialbert distill` writes for
sentence-embedding teachers; it loads as remote code, exactly as from the Hub. The teacher defaults to the one
recorded in the student's config.
"""

import argparse
import json
from pathlib import Path

from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "The central bank raised interest rates to curb inflation.",
    "Borrowing costs went up as the bank tried to slow rising prices.",
    "The striker scored twice in the second half.",
    "A late goal decided the football match.",
    "The new phone has a faster processor and a better camera.",
    "Parliament voted on the proposed election reform.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("student", help="A distilled MiniAlbert folder or Hub id with sentence-transformers modules.")
    parser.add_argument("--teacher", help="The teacher's folder or Hub id (default: the student's recorded one).")
    args = parser.parse_args()

    teacher = args.teacher or json.loads((Path(args.student) / "config.json").read_text())["teacher_name_or_path"]
    models = {
        "student": SentenceTransformer(args.student, trust_remote_code=True, device="cpu"),
        "teacher": SentenceTransformer(teacher, device="cpu"),
    }
    similarities = {name: model.similarity(*[model.encode(SENTENCES)] * 2) for name, model in models.items()}
    pairs = [(i, j) for i in range(len(SENTENCES)) for j in range(i + 1, len(SENTENCES))]
    print(f"{'student':>8} {'teacher':>8}  pair")
    for i, j in sorted(pairs, key=lambda pair: -similarities["teacher"][pair].item()):
        print(f"{similarities['student'][i, j]:8.3f} {similarities['teacher'][i, j]:8.3f}  {i + 1}-{j + 1}")
    ranks = spearmanr([similarities["student"][pair].item() for pair in pairs],
                      [similarities["teacher"][pair].item() for pair in pairs])  # fmt: skip
    print(f"Spearman correlation of the {len(pairs)} pair similarities: {ranks.statistic:.3f}")


if __name__ == "__main__":
    main()
