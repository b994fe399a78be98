"""`minialbert distill` under launchers: two processes with torchrun (DDP) and an FSDP2-sharded student, each
against one process on the same global batch. Each test starts training processes of its own (`slow`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minialbert import MiniAlbertForMaskedLM

from .test_distillation import TINY_RUN


@pytest.mark.slow
def test_two_processes_with_torchrun(tiny_bert_path, tmp_path):
    output_dir = tmp_path / "ddp"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "minialbert.cli",
            "distill",
            "--teacher",
            str(tiny_bert_path),
            "--output_dir",
            str(output_dir),
            *TINY_RUN,
            "--max_steps",
            "4",
            "--save_strategy",
            "no",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((output_dir / "distillation_summary.json").read_text())
    assert summary["global_step"] == 4 and summary["processes"] == 2
    student = MiniAlbertForMaskedLM.from_pretrained(output_dir)
    assert student.config.num_hidden_layers == 2


@pytest.mark.slow
def test_fsdp2_sharded_student_distils_as_one_process_on_the_same_global_batch(tiny_bert_path, tmp_path):
    """torch's FSDP2 on 2 CPU processes (gloo): the shared layer, used at every recursion, is one sharded unit.
    (Through the Trainer `--fsdp` needs accelerators: accelerate does not shard CPU processes, see test_bad_inputs.)"""
    worker = Path(__file__).parent / "fsdp_worker.py"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs = {}
    for processes, port in ((1, "29521"), (2, "29522")):
        output = tmp_path / f"{processes}-processes"
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
                   port, str(worker), str(tiny_bert_path), str(output)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
        assert result.returncode == 0, result.stderr[-4000:]
        runs[processes] = json.loads((output / "losses.json").read_text()), output / "student"
    (single, single_student), (sharded, sharded_student) = runs[1], runs[2]
    # The same sums in another order (a reduction across processes): equal to float32 rounding.
    assert sharded == pytest.approx(single, rel=1e-6) and single[-1] < single[0]
    trained, reference = (MiniAlbertForMaskedLM.from_pretrained(path) for path in (sharded_student, single_student))
    for (name, parameter), expected in zip(trained.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(parameter, expected, rtol=0, atol=1e-6, msg=name)
