"""Where a converted student starts: sentence agreement with the teacher before any training, for each conversion
choice (weights only, or calibrated on the teacher's activations) and capacity.

    python benchmarks/conversion_start.py

On the bundled all-MiniLM-L6-v2 teacher, scored as every benchmark scores (`held_out.agreement`: 256 BBC News
validation windows, 256 Python-reference sentences, the broad sources' held-out sentences). The calibration text
is `minialbert convert`'s default (the first 256 BBC News training articles). Rows that switch one calibrated
choice off patch that step of `minialbert.convert` back to its weight-only form, so each choice is measured alone.
Writes benchmarks/conversion_start.json and prints the table in docs/conversion.md.
"""

import json
import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from held_out import agreement, held_out_texts, transformer_encoder  # noqa: E402

import minialbert.convert as convert  # noqa: E402
from minialbert.teacher import bundled_teacher_path  # noqa: E402

RESULTS = Path(__file__).with_suffix(".json")
RANKS = (0, 32, 96, 384)
WEIGHTS_ONLY_STEPS = {
    "embeddings": ("factorise_embeddings", lambda original: lambda words, rank, weights=None: original(words, rank)),
    "relaxations": ("low_rank_delta", lambda original: lambda delta, target, shared, gram=None: original(
        delta, target, shared)),
}  # fmt: skip
# name -> (ConversionArguments overrides, steps of the calibrated conversion switched back to weights only)
CHOICES = {
    "weights only": ({"calibration_samples": 0}, ()),
    "calibrated: token-weighted embeddings only": ({}, ("relaxations",)),
    "calibrated: whitened relaxations only": ({}, ("embeddings",)),
    "calibrated": ({}, ()),
    "calibrated, init fitted (least-squares shared layer)": ({"init": "fitted"}, ()),
}
LAYER_MAPS = ([2, 4, 6], [1, 3, 6], [1, 4, 6], [2, 5, 6], [3, 5, 6])


def main() -> None:
    logging.getLogger("minialbert.convert").setLevel(logging.ERROR)  # the missing-MLM-head notice, once per row
    teacher_path = bundled_teacher_path()
    teacher = convert.load_teacher(teacher_path)
    texts = held_out_texts(teacher_path)
    teacher_encoder = transformer_encoder(teacher.bert, teacher_path)
    with torch.no_grad():
        teacher_embeddings = {name: teacher_encoder(batch) for name, batch in texts.items()}

    def row(label: str, options: dict, weights_only: tuple[str, ...] = ()) -> dict:
        with ExitStack() as patches:
            for step in weights_only:
                name, replacement = WEIGHTS_ONLY_STEPS[step]
                patches.enter_context(mock.patch.object(convert, name, replacement(getattr(convert, name))))
            start = time.perf_counter()
            # Evenly spaced layers unless a row names its map: the relaxed shape's [1, 4, 6] is one of LAYER_MAPS.
            arguments = convert.ConversionArguments(**{"student_shape": "paper"} | options)
            student = convert.convert_bert_to_minialbert(teacher, arguments)
            seconds = time.perf_counter() - start
        scores = agreement(transformer_encoder(student.minialbert, teacher_path), texts, teacher_embeddings)
        result = {"choice": label, **options, "parameters": student.minialbert.num_parameters()}
        result |= {"convert_seconds": round(seconds, 1), **scores}
        print(json.dumps(result), flush=True)
        return result

    rows = []
    for rank in RANKS:
        for label, (options, weights_only) in CHOICES.items():
            if rank in (0, 384) and weights_only == ("embeddings",):
                continue  # no relaxation to whiten, or a full-rank one that is exact either way
            rows.append(row(label, {"recursion_lora_rank": rank} | options, weights_only))
    for layers in LAYER_MAPS:
        rows.append(row("calibrated, layer map", {"recursion_lora_rank": 96, "teacher_layer_map": layers}))
    RESULTS.write_text(json.dumps({"rows": rows}, indent=1) + "\n")

    print("\n| conversion | relaxation rank | parameters | BBC | Python reference | broad |")
    print("|---|---:|---:|---:|---:|---:|")
    for result in rows:
        label = result["choice"]
        if "teacher_layer_map" in result:
            label += f" {result['teacher_layer_map']}"
        print(
            f"| {label} | {result['recursion_lora_rank']} | {result['parameters'] / 1e6:.2f}M | {result['bbc']:.3f} | "
            f"{result['python_reference']:.3f} | {result['broad']:.3f} |"
        )


if __name__ == "__main__":
    main()
