"""The benchmark's arithmetic: the FLOP count behind `inference.gemm_utilization`."""

import runpy
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from minialbert import MiniAlbertModel

from .conftest import tiny_config

BENCHMARK = runpy.run_path(str(Path(__file__).parent.parent / "benchmarks" / "run.py"))


@pytest.mark.parametrize("use_adapters", [True, False])
def test_forward_flops_match_torch_flop_counter(use_adapters):
    config = tiny_config(vocab_size=99, use_adapters=use_adapters, adapter_reduction_factor=4)
    model = MiniAlbertModel(config).eval()
    model.set_attn_implementation("eager")  # attention as plain matmuls, which the counter sees
    input_ids = torch.randint(1, 99, (2, 16))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=input_ids)
    assert BENCHMARK["forward_flops"](config, tokens=32, sequence=16) == counter.get_total_flops()
