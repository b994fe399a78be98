"""Distil a student for a few steps with torch's FSDP2 (`fully_shard`) on the gloo backend, as one of N processes.

`python -m torch.distributed.run --nproc_per_node N tests/fsdp_worker.py TEACHER OUTPUT`: each process takes its
share of the same global batch (masked once, with a fixed seed, so every world size sees the same masks), computes
`DistillationLoss` on it, and steps AdamW; with one process the global batch is cut into the same shares and their
losses averaged, the very sum that FSDP's gradient reduction computes. Rank 0 writes the per-step losses
(`losses.json`) and the student, gathered into full tensors and saved as a normal folder (`student/`).
`tests/test_distill_launchers.py` compares the runs.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from transformers import AutoTokenizer

from minialbert import convert_bert_to_minialbert
from minialbert.distillation import DistillationArguments, DistillationLoss, resolve_recipe
from minialbert.teacher import load_teacher

SHARES, STEPS = 2, 3


def main(teacher_path: str, output: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    teacher = load_teacher(teacher_path)
    student = convert_bert_to_minialbert(teacher, embedding_size=16, num_recursions=2).eval()  # eval: no dropout
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    args = DistillationArguments(output_dir=str(output / "trainer"), report_to="none", auto_bf16=False, use_cpu=True)
    loss = DistillationLoss(teacher, [2, 4], resolve_recipe(args, teacher, None), tokenizer, args)

    texts = [f"Sentence number {index} of the shared global batch, about markets and films." for index in range(8)]
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    batch = loss.mask(batch)  # every process draws the same masks: same seed, same global batch
    shares = [{key: value.chunk(SHARES)[share] for key, value in batch.items()} for share in range(SHARES)]
    mine = shares[rank::world]

    if world > 1:
        fully_shard(student.minialbert.encoder)  # the shared layer and the adapters: one unit, used every recursion
        fully_shard(student)
        parameters = list(student.parameters())
        assert all(type(parameter).__name__ == "DTensor" for parameter in parameters)
        assert sum(parameter.to_local().numel() for parameter in parameters) < student.num_parameters()
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(STEPS):
        total = 0.0
        for share in mine:
            weights = loss.weights()
            value = sum(weights[name] * term for name, term in loss.terms(student, share).items()) / len(mine)
            value.backward()
            total += value.detach()
        optimizer.step()
        optimizer.zero_grad()
        if world > 1:
            dist.all_reduce(total)
            total /= world
        losses.append(float(total))

    state = get_model_state_dict(student, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        (output / "losses.json").write_text(json.dumps(losses))
        unsharded = convert_bert_to_minialbert(teacher, embedding_size=16, num_recursions=2)
        unsharded.load_state_dict(state)
        unsharded.save_pretrained(output / "student")
        tokenizer.save_pretrained(output / "student")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
