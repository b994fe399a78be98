"""A short version of the default `minialbert distill` job (the bundled teacher, the default corpus and
conversion), and what its student does in the tools users load it with. Its own file: the run is the longest
fixture of the suite, and pytest-xdist (`--dist loadfile`) balances files, not tests."""

import json
import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from transformers import AutoTokenizer

from minialbert import MiniAlbertForMaskedLM
from minialbert.convert import ConversionArguments
from minialbert.data import DataArguments
from minialbert.distill_job import StudentArguments, format_summary, run_distillation
from minialbert.distillation import DistillationArguments, DistillationSummary
from minialbert.sentence_embeddings import pool

from .conftest import assert_remote_code_load_matches


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """A short version of the default job: the bundled teacher and BBC News, converted with default options."""
    output_dir = tmp_path_factory.mktemp("distilled")
    summary = run_distillation(
        StudentArguments(),
        ConversionArguments(),
        DataArguments(max_train_samples=480, max_eval_samples=96, broad_eval_sentences=16),
        DistillationArguments(
            output_dir=str(output_dir),
            max_steps=60,
            agreement_steps=0.5,
            per_device_train_batch_size=8,
            logging_steps=10,
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
            save_strategy="no",
        ),  # fmt: skip
    )
    return output_dir, summary


def test_short_default_run_raises_sentence_agreement_in_and_out_of_domain(default_run):
    output_dir, summary = default_run
    before, after = summary["at_initialisation"], summary["after_distillation"]
    broad = ["broad_sentence_spearman"] if summary["broad_held_out_sentences"] else []  # .ci/run installs them
    assert set(before) == {
        "hidden_cosine", "attention_kl", "student_mlm_accuracy", "sentence_spearman", "ood_sentence_spearman", *broad
    }  # fmt: skip
    for name in ("sentence_spearman", "ood_sentence_spearman", *broad):
        assert after[name] > before[name], (name, before, after)
    assert summary["trained_on_sources"] == sorted(set(summary["broad_held_out_sentences"]) - {"bbc"})
    # The curve: every half of the run (--agreement_steps 0.5) and at the end of training, with the training seconds
    # so far; the end falls on a scoring step, and is scored once.
    curve = summary["agreement_curve"]
    assert [point["step"] for point in curve] == [30, 60]
    assert [point["sentence_spearman"] for point in curve][-1] == pytest.approx(after["sentence_spearman"], abs=2e-3)
    seconds = [point["train_seconds"] for point in curve]
    assert 0 < seconds[0] and seconds == sorted(set(seconds))
    assert json.loads((output_dir / "distillation_summary.json").read_text()) == summary
    # The default (relaxed) student: rank 96 following teacher layers 1, 4 and 6 (docs/distillation.md, "Why relaxed").
    assert summary["global_step"] == 60 and summary["layer_map"] == [1, 4, 6]
    assert summary["recipe"]["depth_schedule"] == "full"
    assert summary["wall_clock_seconds"] > summary["train_runtime_seconds"] > 0
    assert summary["machine"]["threads"] >= 1 and {"cpu", "native_bf16", "vnni", "torch"} <= set(summary["machine"])
    assert summary["recipe"]["name"] == "sentence" and "no masked-LM head" in summary["recipe"]["reason"]
    assert summary["out_of_domain_sentences"] == 256 and summary["train_tokens_per_second"] > 0
    assert summary["teacher_figures"] == {}  # a headless teacher has no masked-LM accuracy of its own
    printed = format_summary(summary)
    assert "recipe 'sentence'" in printed and "ood_sentence_spearman" in printed


def test_the_summary_reads_back_as_it_was_written(default_run, tmp_path):
    output_dir, summary = default_run
    typed = DistillationSummary.read(output_dir)
    assert typed.to_dict() == summary and typed.recipe.name == summary["recipe"]["name"]
    assert typed.describe() == format_summary(summary)
    typed.save(tmp_path)
    assert (tmp_path / DistillationSummary.FILE_NAME).read_text() == (
        output_dir / "distillation_summary.json"
    ).read_text()
    assert DistillationSummary.read(tmp_path / "elsewhere") is None
    (tmp_path / DistillationSummary.FILE_NAME).write_text(json.dumps({**summary, "recipe": None} | {"global_step": 1}))
    with pytest.raises(ValueError, match="is not a distillation summary"):
        DistillationSummary.read(tmp_path)
    (tmp_path / DistillationSummary.FILE_NAME).write_text(json.dumps({"global_step": 60}))
    with pytest.raises(ValueError, match="without teacher, teacher_parameters, .*; distil again"):
        DistillationSummary.read(tmp_path)


SENTENCE_TRANSFORMERS_CHECK = textwrap.dedent(
    """
    import sys

    sys.modules["minialbert"] = None  # as on a machine without this package
    import torch
    from sentence_transformers import SentenceTransformer

    folder, expected_path = sys.argv[1:]
    expected = torch.load(expected_path)
    model = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
    embeddings = model.encode(expected["sentences"], convert_to_tensor=True)
    torch.testing.assert_close(embeddings, expected["embeddings"], rtol=1e-4, atol=1e-5)
    print("encoded", len(embeddings))
    """
)


def test_distilled_student_of_a_sentence_teacher_loads_in_sentence_transformers(default_run, tmp_path):
    output_dir, _ = default_run
    assert {"modules.json", "sentence_bert_config.json"} <= {path.name for path in output_dir.iterdir()}
    sentences = ["Profits rose at the bank.", "A film star won an award at the festival last night."]
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = MiniAlbertForMaskedLM.from_pretrained(output_dir).minialbert(**batch).last_hidden_state
    embeddings = F.normalize(pool(states, batch["attention_mask"]), dim=-1)
    torch.save({"sentences": sentences, "embeddings": embeddings}, tmp_path / "expected.pt")
    result = subprocess.run(
        [sys.executable, "-c", SENTENCE_TRANSFORMERS_CHECK, str(output_dir), str(tmp_path / "expected.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "encoded 2" in result.stdout


def test_distilled_student_loads_as_remote_code(default_run, tmp_path):
    output_dir, _ = default_run
    assert {"config.json", "modeling_minialbert.py", "model.safetensors", "tokenizer.json"} <= {
        path.name for path in output_dir.iterdir()
    }
    student = MiniAlbertForMaskedLM.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    batch = dict(tokenizer(["Profits rose at the bank.", "A film star won an award."], padding=True,
                           return_tensors="pt"))  # fmt: skip
    assert_remote_code_load_matches(student, output_dir, "AutoModelForMaskedLM", batch, tmp_path)


def test_sentence_similarity_example_compares_student_and_teacher(default_run, monkeypatch, capsys):
    output_dir, _ = default_run
    example = Path(__file__).parent.parent / "examples" / "sentence_similarity.py"
    monkeypatch.setattr(sys, "argv", [example.name, str(output_dir)])
    runpy.run_path(str(example), run_name="__main__")
    printed = capsys.readouterr().out
    assert printed.count("  1-2") == 1 and re.search(
        r"Spearman correlation of the 15 pair similarities: -?0\.\d{3}", printed
    )
