import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch.nn import functional as F
from transformers import AutoModel, AutoTokenizer, BertForMaskedLM, HfArgumentParser, Trainer, TrainingArguments

from minialbert import MiniAlbertForMaskedLM, convert_bert_to_minialbert, corpora
from minialbert.convert import ConversionArguments
from minialbert.corpora import SourceNotInstalled
from minialbert.data import DataArguments, load_text_corpus, masked_lm_collator, tokenize_windows
from minialbert.distill_job import StudentArguments, load_student, run_distillation
from minialbert.distillation import (
    LOSS_NAMES,
    RECIPE_OPTIONS,
    RECIPE_TERMS,
    RECIPES,
    DepthSchedule,
    DistillationArguments,
    DistillationLoss,
    DistillationTrainer,
    Recipe,
    agreement_by_depth,
    attention_kl,
    bert_attention_probabilities,
    cosine_loss,
    evaluating,
    logit_kl,
    masked_mean,
    relational_loss,
    resolve_recipe,
    running_depth,
    teacher_targets,
)
from minialbert.folders import OutputArguments
from minialbert.sentence_embeddings import (
    SentenceModules,
    pool,
    read_sentence_modules,
    save_sentence_modules,
    sentence_batches,
)
from minialbert.teacher import load_teacher

from .conftest import booby_trap

# A few fast steps on the tiny BERT teacher, on BBC News alone and scored without the broad held-out sentences
# (one source to read): the shape of every CLI run in this file.
TINY_RUN = [
    "--embedding_size", "16", "--num_recursions", "2", "--corpus", "bbc", "--broad_eval_sentences", "0",
    "--max_seq_length", "32", "--stride", "8", "--max_train_samples", "64", "--max_eval_samples", "16",
    "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
    "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_pin_memory", "false",
]  # fmt: skip


def test_loss_terms_match_reference_computations():
    generator = torch.Generator().manual_seed(0)
    real = torch.tensor([[True, True, True, False], [True, True, False, False]])
    teacher = torch.randn(2, 3, 4, 4, generator=generator).masked_fill(~real[:, None, None, :], -1e9).softmax(-1)
    student = torch.randn(2, 3, 4, 4, generator=generator).masked_fill(~real[:, None, None, :], -1e9).softmax(-1)
    rows = [(b, h, q) for b in range(2) for h in range(3) for q in range(4) if real[b, q]]
    expected = torch.stack(
        [F.kl_div(student[b, h, q][real[b]].log(), teacher[b, h, q][real[b]], reduction="sum") for b, h, q in rows]
    ).mean()
    torch.testing.assert_close(attention_kl(student, teacher, real), expected)

    hidden_student, hidden_teacher = torch.randn(2, 4, 8, generator=generator), torch.randn(2, 4, 8)
    cosines = F.cosine_similarity(hidden_student, hidden_teacher, dim=-1)[real]
    torch.testing.assert_close(cosine_loss(hidden_student, hidden_teacher, real), (1 - cosines).mean())

    student_logits, teacher_logits = torch.randn(5, 11, generator=generator), torch.randn(5, 11, generator=generator)
    p = (teacher_logits / 2).softmax(-1)
    expected_kl = (p * (p.log() - (student_logits / 2).log_softmax(-1))).sum(-1).mean() * 4
    torch.testing.assert_close(logit_kl(student_logits, teacher_logits, temperature=2.0), expected_kl)


def test_relational_loss_matches_a_hand_computation():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)

    def similarity(embeddings, i, j):
        return F.cosine_similarity(embeddings[i], embeddings[j], dim=0)

    pairs = [(i, j) for i in range(5) for j in range(5) if i != j]
    expected_mse = torch.stack([(similarity(student, i, j) - similarity(teacher, i, j)) ** 2 for i, j in pairs])
    torch.testing.assert_close(relational_loss(student, teacher, "mse", 0.05), expected_mse.mean())
    rows = []
    for i in range(5):
        others = [j for j in range(5) if j != i]
        student_row = torch.stack([similarity(student, i, j) for j in others]) / 0.1
        teacher_row = (torch.stack([similarity(teacher, i, j) for j in others]) / 0.1).softmax(0)
        rows.append((teacher_row * (teacher_row.log() - student_row.log_softmax(0))).sum())
    torch.testing.assert_close(relational_loss(student, teacher, "kl", 0.1), torch.stack(rows).mean())
    # Only the similarity structure counts: a scaled rotation of the teacher's embeddings scores 0.
    rotation = torch.linalg.qr(torch.randn(8, 8, generator=generator))[0]
    for form in ("mse", "kl"):
        assert relational_loss(3 * teacher @ rotation, teacher, form, 0.05) < 1e-6
        assert relational_loss(student[:1], teacher[:1], form, 0.05) == 0  # one sentence: no pairs


def test_teacher_attention_maps_are_recomputed_exactly(teacher_path):
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    batch = tokenizer(["Markets fell.", "The minister resigned after the vote on Tuesday."], padding=True,
                      return_tensors="pt")  # fmt: skip
    teacher = AutoModel.from_pretrained(teacher_path, attn_implementation="eager").eval()
    with torch.no_grad():
        outputs = teacher(**batch, output_hidden_states=True, output_attentions=True)
        real = batch["attention_mask"].bool()
        for k in (2, 4, 6):
            rebuilt = bert_attention_probabilities(teacher.encoder.layer[k - 1], outputs.hidden_states[k - 1], real)
            rows = real[:, None, :, None].expand_as(rebuilt)  # padded query rows carry no meaning
            torch.testing.assert_close(rebuilt[rows], outputs.attentions[k - 1][rows], rtol=1e-5, atol=1e-6)


def tiny_trainer(tiny_bert_path, tmp_path, teacher=None, num_recursions=2, **overrides):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_path)
    data = DataArguments(corpus="bbc", max_seq_length=32, stride=8, max_train_samples=32, max_eval_samples=8)
    windows = tokenize_windows(load_text_corpus(data), tokenizer, data)
    student = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, num_recursions=num_recursions)
    options = dict(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=3, logging_steps=1,
        report_to="none", save_strategy="no", disable_tqdm=True, dataloader_pin_memory=False,
    )  # fmt: skip
    arguments = DistillationArguments(**options | overrides)
    return DistillationTrainer(
        teacher or str(tiny_bert_path),
        student,
        arguments,
        train_dataset=windows["train"],
        eval_dataset=windows["validation"],
        processing_class=tokenizer,
    )


def test_trainer_keeps_the_teacher_frozen_in_eval_mode_and_logs_every_term(tiny_bert_path, tmp_path):
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path)
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    trainer = tiny_trainer(tiny_bert_path, tmp_path, teacher=teacher)
    trainer.train()
    assert not teacher.training and not trainer.teacher.bert.training
    assert not any(parameter.requires_grad for parameter in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 3
    for entry in logged:
        assert {"mlm_loss", "attention_loss", "hidden_loss", "logit_loss"} <= entry.keys()
        weighted = entry["mlm_loss"] + 3 * entry["attention_loss"] + 3 * entry["hidden_loss"] + 5 * entry["logit_loss"]
        assert entry["loss"] == pytest.approx(weighted, rel=1e-3)
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_mlm_loss", "eval_hidden_loss", "eval_logit_loss"} <= metrics.keys()

    trainer.save_model()
    with safe_open(Path(trainer.args.output_dir) / "model.safetensors", "pt") as weights:
        assert all(key.startswith(("minialbert.", "predictions.")) for key in weights.keys())


def test_teacher_targets_ignore_the_trainers_train_mode(tiny_bert_path, tmp_path):
    trainer = tiny_trainer(tiny_bert_path, tmp_path)
    batch = trainer.mask(next(iter(trainer.get_train_dataloader())))
    assert (batch["labels"] != -100).any() and "special_tokens_mask" not in batch
    trainer.model.train()
    masked = batch["labels"] != -100
    first = teacher_targets(trainer.teacher, batch, trainer.layer_map, True, masked)
    second = teacher_targets(trainer.teacher, batch, trainer.layer_map, True, masked)
    assert not trainer.teacher.bert.training
    for left, right in zip(first.hidden_states, second.hidden_states, strict=True):
        assert torch.equal(left, right)
    assert torch.equal(first.logits, second.logits) and first.logits.shape == (int(masked.sum()), 30522)
    assert sorted(first.attentions) == [1, 4]


def test_each_term_and_option_is_declared_once_and_every_table_derives_from_it():
    """`RECIPE_TERMS` and `RECIPE_OPTIONS` are the only place a term or option is written: its argument (help,
    choices, None for "the recipe's"), both recipes' defaults and the resolved recipe's fields come from them."""
    actions = {action.dest: action for action in HfArgumentParser(DistillationArguments)._actions}
    for row in (*RECIPE_TERMS, *RECIPE_OPTIONS):
        argument = f"{row.name}_weight" if row in RECIPE_TERMS else row.name
        assert actions[argument].default is None and actions[argument].help.startswith(row.help)
        assert RECIPES["paper"][argument] == row.paper and RECIPES["sentence"][argument] == row.sentence
    for option in RECIPE_OPTIONS:
        assert tuple(actions[option.name].choices) == option.choices and option.name in Recipe.__dataclass_fields__
    assert LOSS_NAMES == tuple(term.name for term in RECIPE_TERMS)


def test_evaluating_restores_the_training_mode_it_found(tiny_bert_path):
    student = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, num_recursions=2)
    for mode in (True, False):
        student.train(mode)
        with pytest.raises(RuntimeError), evaluating(student):
            assert not student.training
            raise RuntimeError("a failing scoring")
        assert student.training is mode


def test_recipes_per_kind_of_teacher_and_options_that_cannot_apply(teacher_path, tiny_bert_path, tmp_path, caplog):
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    student = convert_bert_to_minialbert(teacher_path, num_recursions=1)

    def trainer(teacher=teacher_path, model=student, **options):
        arguments = DistillationArguments(output_dir=str(tmp_path), report_to="none", **options)
        return DistillationTrainer(teacher, model, arguments, processing_class=tokenizer)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="minialbert.distillation"):
        sentence = trainer()
    assert caplog.text == ""
    assert sentence.recipe.name == "sentence" and sentence.recipe.distill_inputs == "unmasked"
    assert sentence.weights()["mlm"] == sentence.weights()["logit"] == 0 and sentence.weights()["sentence"] > 0
    assert sentence.recipe.sentence_pooling == "mean"  # read from the teacher's sentence-transformers modules
    with caplog.at_level(logging.WARNING, logger="minialbert.distillation"):
        paper = trainer(recipe="paper")
    assert (
        caplog.text.count("has no masked-LM head: the paper recipe's logit KL term (logit_weight=5.0) drops out") == 1
    )
    assert paper.weights() == {
        "mlm": 1, "attention": 3, "hidden": 3, "logit": 0, "embedding": 0, "sentence": 0, "relational": 0
    }  # fmt: skip
    with pytest.raises(ValueError, match="--logit_weight 2.0 needs a teacher with a masked-LM head"):
        trainer(logit_weight=2.0)
    with pytest.raises(ValueError, match="Every loss weight is 0"):
        trainer(hidden_weight=0.0, sentence_weight=0.0)
    with pytest.raises(ValueError, match="--hidden_loss must be one of \\['cosine', 'mse'\\], got 'l1'"):
        DistillationArguments(output_dir=str(tmp_path), hidden_loss="l1")
    with pytest.raises(ValueError, match="--relational_loss must be one of \\['mse', 'kl'\\], got 'cosine'"):
        DistillationArguments(output_dir=str(tmp_path), relational_loss="cosine")
    with pytest.raises(ValueError, match="--relational_weight must be non-negative, got -1.0"):
        DistillationArguments(output_dir=str(tmp_path), relational_weight=-1.0)
    with pytest.raises(ValueError, match="--relational_temperature must be positive, got 0"):
        DistillationArguments(output_dir=str(tmp_path), relational_temperature=0)

    small = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, num_recursions=2)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="minialbert.distillation"):
        headed = trainer(tiny_bert_path, small)
        pooled = trainer(tiny_bert_path, small, sentence_weight=1.0)
    assert headed.recipe.name == "paper" and headed.weights()["logit"] == 5
    # A teacher without sentence-transformers modules: the sentence loss falls back to mean pooling, named.
    assert caplog.text.count("has no sentence-transformers Pooling module: the sentence loss pools by mean") == 1
    assert pooled.recipe.sentence_pooling == "mean"


def test_each_recipe_switch_changes_what_the_loss_computes(tiny_bert_path, tmp_path):
    """Every term checked against a direct computation from student and teacher outputs on the same batch."""
    trainer = tiny_trainer(tiny_bert_path, tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    student, teacher = trainer.model.eval(), trainer.teacher.bert
    plain = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    real = plain["attention_mask"].bool()

    def losses(**options):
        args = DistillationArguments(output_dir=str(tmp_path), report_to="none", auto_bf16=False, **options)
        recipe = resolve_recipe(args, trainer.teacher, None)
        trainer.distillation = DistillationLoss(
            trainer.teacher, trainer.layer_map, recipe, trainer.processing_class, args
        )
        torch.manual_seed(0)  # the same masks for every call
        with torch.no_grad():
            return trainer.distillation_losses(student, batch)

    with torch.no_grad():
        student_states = student(**plain, output_hidden_states=True).hidden_states
        teacher_states = teacher(**plain, output_hidden_states=True).hidden_states
    pairs = list(zip(student_states[1:], (teacher_states[k] for k in trainer.layer_map), strict=True))
    mse = [masked_mean((s - t).square().mean(-1), real) for s, t in pairs]
    cosine = [cosine_loss(s, t, real) for s, t in pairs]
    pooled = [pool(states[-1], plain["attention_mask"]) for states in (student_states, teacher_states)]

    unmasked = losses(recipe="sentence")
    assert set(unmasked) == {"hidden", "sentence"}
    torch.testing.assert_close(unmasked["hidden"], torch.stack(cosine).mean())
    torch.testing.assert_close(unmasked["sentence"], 1 - F.cosine_similarity(*pooled).mean())
    squared = losses(recipe="sentence", hidden_loss="mse", sentence_loss="mse")
    torch.testing.assert_close(squared["hidden"], torch.stack(mse).mean())
    torch.testing.assert_close(squared["sentence"], F.mse_loss(*pooled))
    last = losses(recipe="sentence", hidden_layers="last")
    torch.testing.assert_close(last["hidden"], cosine[-1])
    relational = losses(recipe="sentence", relational_weight=1.0)
    assert set(relational) == {"hidden", "sentence", "relational"}
    torch.testing.assert_close(relational["sentence"], unmasked["sentence"])
    torch.testing.assert_close(relational["relational"], relational_loss(*pooled, "mse", 0.05))
    softmaxed = losses(recipe="sentence", relational_weight=1.0, relational_loss="kl", relational_temperature=0.2)
    torch.testing.assert_close(softmaxed["relational"], relational_loss(*pooled, "kl", 0.2))
    assert set(losses(recipe="sentence", sentence_weight=0.0, relational_weight=1.0)) == {"hidden", "relational"}
    every = losses(recipe="sentence", embedding_weight=1.0)
    torch.testing.assert_close(every["hidden"], unmasked["hidden"])
    torch.testing.assert_close(every["embedding"], cosine_loss(student_states[0], teacher_states[0], real))

    # Masked input: the same terms, now of the masked batch; the MLM term takes a second, masked pass.
    masked = losses(recipe="sentence", distill_inputs="masked")
    assert set(masked) == {"hidden", "sentence"} and not torch.allclose(masked["hidden"], unmasked["hidden"])
    with_mlm = losses(recipe="sentence", mlm_weight=1.0)
    assert set(with_mlm) == {"hidden", "sentence", "mlm"}
    torch.testing.assert_close(with_mlm["hidden"], unmasked["hidden"])
    paper = losses(recipe="paper")
    assert set(paper) == {"mlm", "attention", "hidden", "logit"}
    torch.testing.assert_close(paper["hidden"], losses(recipe="paper", mlm_weight=0.0)["hidden"])
    assert not torch.allclose(paper["hidden"], losses(recipe="paper", distill_inputs="unmasked")["hidden"])


def test_elastic_depth_adds_each_shallower_depths_terms_as_computed_by_hand(tiny_bert_path, tmp_path):
    """Three recursions against the 4-layer teacher: depth 1 follows teacher layer [4], depth 2 layers [2, 4], each
    computed here from a run of the student at that depth (`num_recursions`), as a user would serve it."""
    options = dict(recipe="sentence", attention_weight=2.0, relational_weight=0.5, auto_bf16=False)
    trainer = tiny_trainer(tiny_bert_path, tmp_path, num_recursions=3, elastic_depth="sum", depth_weights=[0.5, 2.0],
                           **options)  # fmt: skip
    assert trainer.layer_map == [1, 3, 4]
    batch = next(iter(trainer.get_train_dataloader()))
    plain = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    real = plain["attention_mask"].bool()
    student, teacher = trainer.model.eval(), trainer.teacher.bert

    with torch.no_grad():
        teacher_states = teacher(**plain, output_hidden_states=True).hidden_states
        teacher_maps = {k: bert_attention_probabilities(teacher.encoder.layer[k - 1], teacher_states[k - 1], real)
                        for k in range(1, 5)}  # fmt: skip

    def by_hand(depth: int, layers: list[int]) -> dict[str, torch.Tensor]:
        with torch.no_grad(), running_depth(student, depth):
            outputs = student.minialbert(**plain, output_hidden_states=True, output_attentions=True)
        states = outputs.hidden_states[1:]
        pooled = [pool(hidden[-1], plain["attention_mask"]) for hidden in (outputs.hidden_states, teacher_states)]
        return {
            "hidden": torch.stack(
                [cosine_loss(s, teacher_states[k], real) for s, k in zip(states, layers, strict=True)]
            ).mean(),
            "attention": torch.stack(
                [attention_kl(a, teacher_maps[k], real) for a, k in zip(outputs.attentions, layers, strict=True)]
            ).mean(),
            "sentence": 1 - F.cosine_similarity(*pooled).mean(),
            "relational": relational_loss(*pooled, "mse", 0.05),
        }

    with torch.no_grad():
        losses = trainer.distillation_losses(student, batch)
    expected = by_hand(3, [1, 3, 4]) | {
        f"{name}@{depth}": value
        for depth, layers in {1: [4], 2: [2, 4]}.items()
        for name, value in by_hand(depth, layers).items()
    }
    assert set(losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-5, atol=1e-6, msg=name)
    weights = trainer.weights()
    term_weights = {"hidden": 1.0, "attention": 2.0, "sentence": 1.0, "relational": 0.5}
    for name, weight in term_weights.items():
        assert weights[name] == weight and weights[f"{name}@1"] == 0.5 * weight and weights[f"{name}@2"] == 2 * weight
    with torch.no_grad():
        total = trainer.compute_loss(student, batch)
    torch.testing.assert_close(total, sum(weights[name] * value for name, value in expected.items()))

    # "sample": the full depth, plus one shallower depth drawn in proportion to its weight, weighted by their sum.
    sampled = tiny_trainer(tiny_bert_path, tmp_path, num_recursions=3, elastic_depth="sample",
                           depth_weights=[0.5, 2.0], **options)  # fmt: skip
    sampled.model.load_state_dict(student.state_dict())
    drawn = set()
    for seed in range(6):
        torch.manual_seed(seed)
        depth = int(torch.multinomial(torch.tensor([0.5, 2.0]), 1)) + 1
        drawn.add(depth)
        torch.manual_seed(seed)
        with torch.no_grad():
            losses = sampled.distillation_losses(sampled.model.eval(), batch)
        assert set(losses) == {*term_weights, *(f"{name}@sampled" for name in term_weights)}
        torch.testing.assert_close(losses["hidden@sampled"], expected[f"hidden@{depth}"])
        torch.testing.assert_close(losses["sentence@sampled"], expected[f"sentence@{depth}"])
    assert drawn == {1, 2}
    assert sampled.weights()["hidden@sampled"] == 2.5 and sampled.weights()["attention@sampled"] == 5.0


def test_depth_schedules_name_a_depth_for_every_share_of_training():
    assert str(DepthSchedule.parse("full")) == "full" and str(DepthSchedule.parse("switch:0.350")) == "switch:0.35"
    by_progress = {
        "full": [3, 3, 3, 3, 3],
        "switch:0.35": [1, 1, 3, 3, 3],  # progress 0, 0.2, 0.4, 0.6, 0.8
        "ramp:0.5": [1, 1, 2, 3, 3],  # depth 1 until 0.25, 2 until 0.5
        "ramp:1": [1, 1, 1, 2, 2],
        "grow:1": [1, 1, 1, 2, 2],
    }
    for text, depths in by_progress.items():
        schedule = DepthSchedule.parse(text)
        assert [schedule.depth(step / 5, 3) for step in range(5)] == depths, text
    sample = DepthSchedule.parse("sample:0.5")
    torch.manual_seed(0)
    drawn = [sample.depth(0.1, 3) for _ in range(60)]
    assert set(drawn) == {1, 2, 3}
    assert sample.depth(0.5, 3) == 3
    for bad in ("switch", "switch:0", "ramp:1.5", "sample:x", "grow:2", "loop:0.5", "full:0.5"):
        with pytest.raises(ValueError, match=f"--depth_schedule must be one of .* got '{bad}'; e.g. --depth_schedule"):
            DistillationArguments(output_dir="unused", depth_schedule=bad)


@pytest.mark.parametrize("schedule", ["switch:0.5", "ramp:0.75", "sample:0.75"])
def test_each_step_runs_the_depth_its_schedule_names(tiny_bert_path, tmp_path, schedule):
    """Eight steps of a 3-recursion student: the depth logged at each step is the schedule's at that step's share of
    training, and the step trains what that depth computes."""
    trainer = tiny_trainer(tiny_bert_path, tmp_path, num_recursions=3, max_steps=8, depth_schedule=schedule,
                           recipe="sentence", auto_bf16=False)  # fmt: skip
    assert trainer.recipe.depth_schedule == schedule and f"depth_schedule {schedule}" in trainer.recipe.describe()
    parsed = DepthSchedule.parse(schedule)
    trainer.train()
    logged = [entry["depth"] for entry in trainer.state.log_history if "loss" in entry]
    if parsed.kind == "sample":
        # Drawn per step until 0.75 of training (steps 1 to 6, seeded by --seed), full depth after.
        assert set(logged[:6]) <= {1, 2, 3} and len(set(logged[:6])) > 1 and logged[6:] == [3, 3]
    else:
        assert logged == [parsed.depth(step / 8, 3) for step in range(8)]

    if parsed.kind != "sample":
        # A step at depth 1 is the first recursion against the teacher layer a 1-recursion student follows (4).
        trainer.state.global_step, trainer._step_depth = 0, None
        batch = next(iter(trainer.get_train_dataloader()))
        plain = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
        student = trainer.model.eval()
        student.training = True  # a training step, with every submodule's dropout off
        with torch.no_grad():
            losses = trainer.distillation_losses(student, batch)
            with running_depth(student, 1):
                state = student.minialbert(**plain).last_hidden_state
            teacher = trainer.teacher.bert(**plain, output_hidden_states=True).hidden_states
        assert student.config.num_recursions is None, "the depth was not restored"
        real = plain["attention_mask"].bool()
        torch.testing.assert_close(losses["hidden"], cosine_loss(state, teacher[4], real))


def test_elastic_depth_under_a_schedule_trains_the_depths_below_the_steps(tiny_bert_path, tmp_path):
    trainer = tiny_trainer(tiny_bert_path, tmp_path, num_recursions=3, max_steps=4, depth_schedule="ramp:1",
                           elastic_depth="sum", recipe="sentence", auto_bf16=False)  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    terms = {}
    for step in range(4):  # progress 0, 0.25 (depth 1), 0.5, 0.75 (depth 2)
        trainer.state.global_step, trainer.state.max_steps = step, 4
        with torch.no_grad():
            terms[step] = set(trainer.distillation_losses(trainer.model, batch))
    assert terms[0] == terms[1] == {"hidden", "sentence"}
    assert terms[2] == terms[3] == {"hidden", "sentence", "hidden@1", "sentence@1"}
    trainer.train()
    assert [entry["depth"] for entry in trainer.state.log_history if "loss" in entry] == [1, 1, 2, 2]


def test_a_growing_student_follows_its_own_teacher_layers_from_a_shorter_teacher(tiny_bert_path, tmp_path):
    """`grow`: a step at depth d follows the first d layers of the layer map, the sentence terms included."""
    trainer = tiny_trainer(tiny_bert_path, tmp_path, num_recursions=2, max_steps=4, depth_schedule="grow:0.5",
                           recipe="sentence", auto_bf16=False)  # fmt: skip
    assert trainer.layer_map == [1, 4] and trainer.distillation.layers_at(1) == [1]
    batch = next(iter(trainer.get_train_dataloader()))
    plain = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        full = trainer.teacher.bert(**plain, output_hidden_states=True).hidden_states

    student = trainer.model.eval()
    student.training = True  # a training step, with every submodule's dropout off
    trainer.state.global_step, trainer.state.max_steps = 0, 4
    with torch.no_grad():
        losses = trainer.distillation_losses(student, batch)
        with running_depth(student, 1):
            state = student.minialbert(**plain).last_hidden_state
    real = plain["attention_mask"].bool()
    torch.testing.assert_close(losses["hidden"], cosine_loss(state, full[1], real))
    pooled = [pool(hidden, plain["attention_mask"]) for hidden in (state, full[1])]
    torch.testing.assert_close(losses["sentence"], 1 - F.cosine_similarity(*pooled).mean())
    trainer.train()
    assert [entry["depth"] for entry in trainer.state.log_history if "loss" in entry] == [1, 1, 2, 2]


def test_elastic_depth_options_that_do_not_fit_the_student_are_refused(tiny_bert_path, tmp_path):
    for overrides, message in [
        (dict(elastic_depth="sum", depth_weights=[1.0, 1.0]),
         r"--depth_weights \[1.0, 1.0\] must give one weight for each of the 1 shallower depths \(1 to 1\)"),
        (dict(depth_weights=[1.0]), r"--depth_weights \[1.0\] weigh shallower depths, which train only with elastic"),
        (dict(elastic_depth="sum", num_recursions=1),
         "this one has a single recursion; drop --elastic_depth or convert with --num_recursions 2 or more"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            tiny_trainer(tiny_bert_path, tmp_path, **overrides)
    with pytest.raises(ValueError, match=r"--depth_weights must be non-negative weights, not all 0"):
        DistillationArguments(output_dir=str(tmp_path), elastic_depth="sum", depth_weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="--elastic_depth must be one of \\['off', 'sum', 'sample'\\]"):
        DistillationArguments(output_dir=str(tmp_path), elastic_depth="all")
    assert not (tmp_path / "run").exists()


def test_a_teacher_with_a_head_keeps_every_term_and_each_decreases(tiny_bert_path, tmp_path):
    # A random teacher predicts near-uniform words, which the student's own masked-LM loss rightly moves away from:
    # give the teacher real predictions first, with a short masked-LM training of its own on the same text.
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_path)
    data = DataArguments(max_seq_length=32, stride=8, max_train_samples=256)
    teacher = BertForMaskedLM.from_pretrained(tiny_bert_path)
    Trainer(
        teacher,
        TrainingArguments(str(tmp_path / "teacher-run"), max_steps=60, learning_rate=3e-3, report_to="none",
                          per_device_train_batch_size=16, save_strategy="no", disable_tqdm=True),
        train_dataset=tokenize_windows(load_text_corpus(data), tokenizer, data)["train"],
        data_collator=masked_lm_collator(tokenizer),
    ).train()  # fmt: skip
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")

    # The student starts from the untrained teacher, so every term has a distance to close.
    trainer = tiny_trainer(
        tiny_bert_path, tmp_path, str(tmp_path / "teacher"), max_steps=40, learning_rate=1e-3, warmup_steps=0
    )
    assert trainer.recipe.name == "paper"
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    for term in ("mlm", "attention", "hidden", "logit"):
        values = [entry[f"{term}_loss"] for entry in logged]
        assert sum(values[-5:]) < sum(values[:5]), (term, values)


def test_sentence_modules_are_read_as_data_and_written_for_students(teacher_path, tiny_bert_path, tmp_path):
    modules = read_sentence_modules(teacher_path)
    assert modules == SentenceModules(pooling="mean", normalize=True, max_seq_length=256, lowercase=False)
    assert read_sentence_modules(str(tiny_bert_path)) is None
    save_sentence_modules(SentenceModules("cls", normalize=False), tmp_path, hidden_size=32)
    assert read_sentence_modules(str(tmp_path)) == SentenceModules("cls", normalize=False)
    (tmp_path / "modules.json").write_text(json.dumps([*json.loads((tmp_path / "modules.json").read_text()),
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))  # fmt: skip
    assert read_sentence_modules(str(tmp_path)) is None  # a Dense layer this package cannot reproduce


def test_mismatched_teacher_and_student_are_refused_before_training(tiny_bert_path, teacher_path, tmp_path):
    student = convert_bert_to_minialbert(teacher_path, num_recursions=1)
    with pytest.raises(ValueError, match="hidden_size 384, the teacher 30522 and 32"):
        DistillationTrainer(tiny_bert_path, student, DistillationArguments(output_dir=str(tmp_path)))
    small = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16)
    with pytest.raises(
        ValueError, match=r"layer_map \[1, 9\] must give one teacher layer in \[1, 4\] for each of the 2 recursions"
    ):
        DistillationTrainer(tiny_bert_path, small, DistillationArguments(output_dir=str(tmp_path), layer_map=[1, 9]))
    with pytest.raises(ValueError, match="--attention_weight must be non-negative"):
        DistillationArguments(output_dir=str(tmp_path), attention_weight=-1.0)


def test_refuses_a_non_empty_output_dir_without_checkpoints(tiny_bert_path, tmp_path, capsys):
    from minialbert.cli import main

    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["distill", "--teacher", str(tiny_bert_path), "--output_dir", str(tmp_path), *TINY_RUN]) == 2
    assert "is not empty and holds no checkpoint to resume from" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_an_unreadable_corpus_fails_before_the_output_folder_is_touched(tmp_path, monkeypatch):
    def not_installed(name):
        raise SourceNotInstalled(f"{name} is missing here")

    monkeypatch.setattr(corpora, "read_source", not_installed)
    output_dir = tmp_path / "student"
    output_dir.mkdir()
    (output_dir / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="No source of --corpus wordnet,fortunes is installed here"):
        run_distillation(
            StudentArguments(),
            ConversionArguments(),
            DataArguments(corpus="wordnet,fortunes"),
            DistillationArguments(output_dir=str(output_dir), report_to="none"),
            OutputArguments(overwrite_output_dir=True),
        )
    assert [path.name for path in output_dir.iterdir()] == ["config.json"]


def test_a_student_folder_is_read_as_data_and_its_code_never_runs(tiny_bert_path, tmp_path):
    student = convert_bert_to_minialbert(tiny_bert_path, embedding_size=16, num_recursions=2)
    marker = tmp_path / "marker"
    for name, model_type in (("ours", None), ("foreign", "evil")):
        student.save_pretrained(tmp_path / name)
        booby_trap(tmp_path / name, marker, model_type)
    loaded = load_student(str(tmp_path / "ours"))
    assert type(loaded) is MiniAlbertForMaskedLM  # the installed package's class, not the folder's copy
    with pytest.raises(ValueError, match="holds a 'evil' model, not a MiniAlbert one; pass a MiniAlbert folder"):
        load_student(str(tmp_path / "foreign"))
    assert not marker.exists()


def test_distill_starts_from_an_existing_student(tiny_bert_path, tmp_path, capsys):
    from minialbert.cli import main

    student = tmp_path / "student"
    assert main(["convert", str(tiny_bert_path), str(student), "--embedding_size", "16", "--num_recursions", "4"]) == 0
    options = ["--teacher", str(tiny_bert_path), *TINY_RUN, "--max_steps", "2", "--save_strategy", "no"]
    assert main(["distill", "--student", str(student), "--output_dir", str(tmp_path / "out"), *options]) == 0
    summary = json.loads((tmp_path / "out" / "distillation_summary.json").read_text())
    assert summary["layer_map"] == [1, 2, 3, 4] and summary["global_step"] == 2

    assert main(["distill", "--student", str(tiny_bert_path), "--output_dir", str(tmp_path / "x"), *options]) == 2
    assert "holds a 'bert' model, not a MiniAlbert one; pass a MiniAlbert folder" in capsys.readouterr().err


def test_scoring_encodes_the_teachers_held_out_embeddings_once(tiny_bert_path):
    """The teacher never trains: every scoring of a run (before, the curve, after, by depth) reuses its embeddings
    of a held-out set, and another set is encoded afresh."""
    teacher = load_teacher(tiny_bert_path)
    student = convert_bert_to_minialbert(teacher, embedding_size=16, num_recursions=2, calibration_samples=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_path)
    texts = ["The cat sat.", "A dog ran far away.", "Rain fell all day long.", "Tea is hot."]
    held_out = sentence_batches(tokenizer, texts, batch_size=2)
    teacher_passes = []
    teacher.bert.register_forward_hook(lambda *args: teacher_passes.append(1))
    first = agreement_by_depth(student, teacher, {"held_out": held_out})
    assert len(teacher_passes) == 2  # one per batch
    assert agreement_by_depth(student, teacher, {"held_out": held_out}) == first
    assert len(teacher_passes) == 2
    agreement_by_depth(student, teacher, {"other": sentence_batches(tokenizer, texts[:3], batch_size=2)})
    assert len(teacher_passes) == 4
