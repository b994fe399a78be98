import subprocess
import sys
import textwrap

import peft
import pytest
import torch
import transformers
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from minialbert import (
    AUTO_CLASSES,
    MiniAlbertForMaskedLM,
    MiniAlbertForMultipleChoice,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
)
from minialbert.configuration_minialbert import head_of
from minialbert.tuning import (
    PEFT_TARGET_MODULES,
    enable_tuning,
    load_tuned,
    save_tuned,
    trainable_parameters,
)

from .conftest import tiny_config


def training_rows(model_class, count=16, length=10):
    generator = torch.Generator().manual_seed(1)
    rows = {"input_ids": torch.randint(1, 99, (count, length), generator=generator).tolist()}
    rows["attention_mask"] = [[1] * length] * count
    if model_class is MiniAlbertForSequenceClassification:
        rows["labels"] = torch.randint(0, 3, (count,), generator=generator).tolist()
    elif model_class is MiniAlbertForTokenClassification:
        rows["labels"] = torch.randint(0, 3, (count, length), generator=generator).tolist()
    elif model_class is MiniAlbertForMaskedLM:
        rows["labels"] = rows["input_ids"]
    elif model_class is MiniAlbertForQuestionAnswering:
        rows["start_positions"] = [1] * count
        rows["end_positions"] = [3] * count
    elif model_class is MiniAlbertForMultipleChoice:
        rows = {name: [[row, row] for row in values] for name, values in rows.items()}
        rows["labels"] = [0, 1] * (count // 2)
    return Dataset.from_dict(rows)


def train_a_few_steps(model, model_class, tmp_path):
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to="none", save_strategy="no", disable_tqdm=True, use_cpu=True, label_names=["labels"],
    )  # fmt: skip
    Trainer(model=model, args=arguments, train_dataset=training_rows(model_class)).train()


def batch_for(model_class):
    rows = training_rows(model_class, count=2)
    return {name: torch.tensor(rows[name]) for name in ("input_ids", "attention_mask")}


def outputs_of(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).to_tuple()[0]


TRAINABLE_HEADS = [cls for cls in AUTO_CLASSES.values() if cls is not MiniAlbertModel]


@pytest.mark.parametrize("mode", ["adapters", "relaxed"])
@pytest.mark.parametrize("model_class", TRAINABLE_HEADS)
def test_tuning_modes_train_only_what_they_should(model_class, mode, tmp_path):
    model = model_class(tiny_config(use_adapters=False))
    batch = batch_for(model_class)
    before_outputs = outputs_of(model, batch)
    report = enable_tuning(model, mode, rank=4)
    # The added adapters or relaxation start as identities.
    torch.testing.assert_close(outputs_of(model, batch), before_outputs)
    assert 0 < report["share"] < 0.5 and report == trainable_parameters(model)

    frozen = {name: value.clone() for name, value in model.named_parameters() if not value.requires_grad}
    tuned = {name: value.clone() for name, value in model.named_parameters() if value.requires_grad}
    expected_prefix = "minialbert.encoder.adapters." if mode == "adapters" else "minialbert.encoder.relaxations."
    assert all(name.startswith(expected_prefix) or not name.startswith("minialbert.") for name in tuned)
    assert "minialbert.encoder.layer.attention.query.weight" in frozen
    assert "minialbert.embeddings.word_embeddings.weight" in frozen
    train_a_few_steps(model, model_class, tmp_path)
    for name, value in model.named_parameters():
        if name in frozen:
            assert torch.equal(value, frozen[name]), f"{name} moved"
    assert any(not torch.equal(value, tuned[name]) for name, value in model.named_parameters() if name in tuned)


def test_tuned_artifacts_round_trip_exactly(tmp_path):
    base = MiniAlbertForMaskedLM(tiny_config(use_adapters=False))
    base.save_pretrained(tmp_path / "base")
    topics = {0: "business", 1: "sport", 2: "tech"}
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", id2label=topics)
    enable_tuning(model, "adapters")
    train_a_few_steps(model, MiniAlbertForSequenceClassification, tmp_path)
    size = save_tuned(model, tmp_path / "tuned")
    assert sorted(path.name for path in (tmp_path / "tuned").iterdir()) == [
        "minialbert_tuning.json",
        "tuned_parameters.safetensors",
    ]
    assert size < 0.5 * (tmp_path / "base" / "model.safetensors").stat().st_size

    loaded = load_tuned(tmp_path / "tuned")
    assert type(loaded) is MiniAlbertForSequenceClassification and loaded.config.use_adapters
    assert loaded.config.id2label == topics
    batch = batch_for(MiniAlbertForSequenceClassification)
    torch.testing.assert_close(outputs_of(loaded, batch), outputs_of(model, batch), rtol=0, atol=0)


def test_tuning_works_on_a_model_loaded_as_remote_code(tmp_path):
    MiniAlbertForSequenceClassification(tiny_config(use_adapters=False)).save_pretrained(tmp_path / "base")
    # In this process the registered classes win; take the class from the folder's own code, as a Hub user gets it.
    remote_class = get_class_from_dynamic_module(
        "modeling_minialbert.MiniAlbertForSequenceClassification", str(tmp_path / "base")
    )
    model = remote_class.from_pretrained(tmp_path / "base")
    assert type(model).__module__.startswith("transformers_modules.")
    report = enable_tuning(model, "adapters")
    assert type(model.minialbert.encoder.adapters[0]).__module__ == type(model).__module__
    assert report["trainable"] > 0 and model.config.use_adapters


def test_relaxed_artifact_round_trip(tmp_path):
    base = MiniAlbertForTokenClassification(tiny_config())
    base.save_pretrained(tmp_path / "base")
    model = MiniAlbertForTokenClassification.from_pretrained(tmp_path / "base")
    enable_tuning(model, "relaxed", rank=2)
    train_a_few_steps(model, MiniAlbertForTokenClassification, tmp_path)
    save_tuned(model, tmp_path / "tuned")
    loaded = load_tuned(tmp_path / "tuned", tmp_path / "base")
    assert loaded.config.recursion_lora_rank == 2
    batch = batch_for(MiniAlbertForTokenClassification)
    torch.testing.assert_close(outputs_of(loaded, batch), outputs_of(model, batch), rtol=0, atol=0)


def test_bad_tuning_requests_are_refused():
    model = MiniAlbertForSequenceClassification(tiny_config())
    with pytest.raises(ValueError, match="Unknown tuning mode 'prefix'; use one of adapters, relaxed"):
        enable_tuning(model, "prefix")
    with pytest.raises(ValueError, match="needs a rank of at least 1"):
        enable_tuning(model, "relaxed", rank=0)
    with pytest.raises(ValueError, match="needs a MiniAlbert model, got Linear"):
        enable_tuning(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no trainable parameters"):
        save_tuned(model.requires_grad_(False), "unused")


PEFT_CONFIGS = {
    # PEFT excludes the output layer from "all-linear" only for masked-LM and SEQ_CLS heads (the same holds for
    # BERT): token-classification and QA heads exclude theirs by name, as minialbert.tuning's notes say.
    "lora-all-linear": lambda task: peft.LoraConfig(
        task_type=task, target_modules="all-linear", r=4, exclude_modules=["classifier", "qa_outputs"]
    ),
    "lora-named": lambda task: peft.LoraConfig(task_type=task, target_modules=["query", "value", "ffn"], r=4),
    "ia3-named": lambda task: peft.IA3Config(
        task_type=task, target_modules=["key", "value", "ffn_output"], feedforward_modules=["ffn_output"]
    ),
}


@pytest.mark.parametrize("method", sorted(PEFT_CONFIGS))
@pytest.mark.parametrize("model_class", TRAINABLE_HEADS)
def test_peft_trains_saves_reloads_and_merges_exactly(model_class, method, tmp_path):
    base = model_class(tiny_config())
    base.save_pretrained(tmp_path / "base")
    auto_class = getattr(transformers, head_of(model_class.__name__).auto_class)
    task_type = head_of(model_class.__name__).peft_task_type
    config = PEFT_CONFIGS[method](task_type)
    if task_type is None and model_class is not MiniAlbertForMaskedLM:
        config.modules_to_save = ["classifier"]
    model = peft.get_peft_model(auto_class.from_pretrained(tmp_path / "base"), config)
    frozen = {name: value.clone() for name, value in model.named_parameters() if not value.requires_grad}
    train_a_few_steps(model, model_class, tmp_path)
    for name, value in model.named_parameters():
        if name in frozen:
            assert torch.equal(value, frozen[name]), f"{name} moved"

    model.save_pretrained(tmp_path / "adapter")
    files = {path.name for path in (tmp_path / "adapter").iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    batch = batch_for(model_class)
    expected = outputs_of(model, batch)
    reloaded = peft.PeftModel.from_pretrained(auto_class.from_pretrained(tmp_path / "base"), tmp_path / "adapter")
    torch.testing.assert_close(outputs_of(reloaded, batch), expected, rtol=0, atol=0)
    merged = reloaded.merge_and_unload()
    assert type(merged) is model_class
    torch.testing.assert_close(outputs_of(merged, batch), expected, rtol=1e-4, atol=1e-5)


def test_peft_lora_lands_once_on_the_shared_layer():
    # With adapters and relaxations present too: PEFT's name matching must reach only the shared linears.
    model = peft.get_peft_model(
        MiniAlbertForSequenceClassification(tiny_config(use_adapters=True, recursion_lora_rank=2)),
        peft.LoraConfig(task_type="SEQ_CLS", target_modules=list(PEFT_TARGET_MODULES), r=2),
    )
    wrapped = [name for name, module in model.named_modules() if isinstance(module, peft.tuners.lora.Linear)]
    prefix = "base_model.model.minialbert.encoder.layer."
    assert wrapped == [
        prefix + name
        for name in ("attention.query", "attention.key", "attention.value", "attention.dense", "ffn", "ffn_output")
    ]


def test_peft_refuses_unknown_target_names():
    with pytest.raises(ValueError, match="No modules were targeted for adaptation"):
        peft.get_peft_model(
            MiniAlbertForSequenceClassification(tiny_config()),
            peft.LoraConfig(task_type="SEQ_CLS", target_modules=["q_proj", "v_proj"]),
        )


PEFT_REMOTE_CHECK = textwrap.dedent(
    """
    import sys

    sys.modules["minialbert"] = None
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base_dir, adapter_dir, expected_path = sys.argv[1:]
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, trust_remote_code=True)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    expected = torch.load(expected_path)
    with torch.no_grad():
        logits = model(**expected["inputs"]).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=0)
    print("peft remote ok")
    """
)


def test_peft_adapter_loads_on_remote_code_without_the_package(tmp_path):
    MiniAlbertForSequenceClassification(tiny_config()).save_pretrained(tmp_path / "base")
    model = peft.get_peft_model(
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "base"),
        peft.LoraConfig(task_type="SEQ_CLS", target_modules="all-linear", r=4),
    )
    train_a_few_steps(model, MiniAlbertForSequenceClassification, tmp_path)
    model.save_pretrained(tmp_path / "adapter")
    batch = batch_for(MiniAlbertForSequenceClassification)
    torch.save({"inputs": batch, "logits": outputs_of(model, batch)}, tmp_path / "expected.pt")
    result = subprocess.run(
        [sys.executable, "-c", PEFT_REMOTE_CHECK, str(tmp_path / "base"), str(tmp_path / "adapter"),
         str(tmp_path / "expected.pt")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "peft remote ok" in result.stdout
