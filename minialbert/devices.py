"""What the machine can do, decided before work starts: whether bf16 pays on this CPU, and whether `--fsdp`
can apply. Light on purpose: inference (`minialbert.runtimes`) and training (`minialbert.distillation`,
`minialbert.finetuning`) both ask."""

import functools
import logging
import os
import platform
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import BadInputError

if TYPE_CHECKING:
    from transformers import TrainingArguments

logger = logging.getLogger(__name__)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    model = re.search(r"^model name\s*:\s*(.+)$", _cpuinfo(), re.MULTILINE)
    return model.group(1).strip() if model else platform.processor() or platform.machine()


def machine() -> dict:
    """What a measurement ran on, for the record beside it: the CPU model, whether it has native bf16
    (avx512_bf16/amx_bf16) and int8 dot products (VNNI), the threads torch uses, and the torch and transformers
    versions. Machines of one kind differ by more than 2x (native bf16 or AVX2 only): times compare only between
    rows of one machine."""
    import transformers

    return {
        "cpu": cpu_name(),
        "native_bf16": cpu_has_native_bf16(),
        "vnni": re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", _cpuinfo()) is not None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or amx_bf16); elsewhere it is emulated, and slow."""
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", _cpuinfo()) is not None


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether to train under bf16 autocast on this CPU: only with native bf16 in its flags, and, in a single
    process, only when a timed feed-forward step (forward and backward, BERT-small shapes) runs at least 10%
    faster than in fp32. Machines of one kind differ (without native support bf16 is emulated and slower), so this
    is decided per machine. Processes of a torchrun launch decide from the flags alone, so that all agree."""
    if not cpu_has_native_bf16():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return True
    generator = torch.Generator().manual_seed(0)
    block = nn.Sequential(nn.Linear(384, 1536), nn.GELU(), nn.Linear(1536, 384))
    inputs = torch.randn(2048, 384, generator=generator)

    def seconds(enabled: bool) -> float:
        timings = []
        for _ in range(4):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                block(inputs).float().square().mean().backward()
            timings.append(time.perf_counter() - start)
        return min(timings[1:])

    fp32, bf16 = seconds(False), seconds(True)
    logger.info("bf16 autocast step %.1f ms vs fp32 %.1f ms on this CPU.", bf16 * 1e3, fp32 * 1e3)
    return bf16 < 0.9 * fp32


def check_fsdp_device(args: "TrainingArguments") -> None:
    """Refuse `--fsdp` where accelerate would not apply it: it shards only processes that each have an accelerator
    (GPU, XPU, NPU, ...); CPU processes would train with plain DDP instead, silently."""
    if args.fsdp and args.device.type == "cpu":
        raise BadInputError(
            f"--fsdp on CPU: accelerate applies FSDP only to processes with an accelerator (GPU, XPU, NPU, ...), so "
            f"these {args.world_size} CPU process(es) would train unsharded (DDP). Drop --fsdp to train with DDP on "
            "CPU; the student itself shards with torch's FSDP2 on CPU (docs/distillation.md)."
        )
