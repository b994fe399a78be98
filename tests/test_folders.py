"""The output-folder policy: resume points, replacing a folder only once its replacement is complete, and failed
writes that leave the previous output as it was."""

import contextlib
import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from transformers import Trainer, TrainingArguments

from minialbert import MiniAlbertModel
from minialbert.cli import main
from minialbert.errors import BadInputError
from minialbert.folders import OutputLock, write_folder
from minialbert.training_runs import last_complete_checkpoint, prepare_training_output

from .conftest import entries, tiny_config


def checkpoint(folder: Path, step: int, complete: bool = True, options: dict | None = None, **state) -> Path:
    """A checkpoint folder as the Trainer writes it: weights first, trainer_state.json last, with the `RunRecord`
    of a job run with `options` (none: a checkpoint from before records)."""
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        state = {"global_step": step, **state}
        if options is not None:
            record = {"options": options, "train_seconds": 1.5 * step, "global_step": step}
            state["stateful_callbacks"] = {"RunRecord": {"args": record, "attributes": {}}}
        (path / "trainer_state.json").write_text(json.dumps(state))
    return path


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_checkpoint_cut_off_while_being_written_is_never_resumed_from(tmp_path):
    output = tmp_path / "student"
    checkpoint(output, 10)
    checkpoint(output, 20, complete=False)  # killed before trainer_state.json
    truncated = checkpoint(output, 30, complete=False)
    (truncated / "trainer_state.json").write_text('{"global_step": 3')  # killed while writing it
    checkpoint(output, 9)
    assert last_complete_checkpoint(output) == (output / "checkpoint-10", [truncated, output / "checkpoint-20"])

    with prepare_training_output(output, overwrite=False) as prepared:
        assert prepared.resume_from == str(output / "checkpoint-10")
        assert prepared.working_dir == output
    # The cut-off ones are removed, so the resumed run writes its own in their place.
    assert sorted(path.name for path in output.iterdir()) == ["checkpoint-10", "checkpoint-9"]
    assert entries(tmp_path) == ["student"], "the lock was left behind"


def test_only_cut_off_checkpoints_start_over_but_a_folder_with_other_files_is_refused_untouched(tmp_path):
    output = tmp_path / "student"
    checkpoint(output, 5, complete=False)
    with prepare_training_output(output, overwrite=False) as prepared:
        assert prepared.resume_from is None
    assert list(output.iterdir()) == []

    checkpoint(output, 5, complete=False)
    (output / "notes.txt").write_text("keep me")
    before = contents(output)
    with pytest.raises(ValueError, match="is not empty and holds no checkpoint to resume from; choose another folder"):
        prepare_training_output(output, overwrite=False)
    assert contents(output) == before
    assert entries(tmp_path) == ["student"]


def tiny_trainer(output: Path) -> Trainer:
    return Trainer(
        model=MiniAlbertModel(tiny_config()), args=TrainingArguments(output_dir=str(output), report_to="none")
    )


def test_an_overwrite_trains_beside_the_old_folder_and_a_failure_keeps_both(tmp_path):
    output = tmp_path / "student"
    output.mkdir()
    (output / "model.safetensors").write_bytes(b"old")
    trainer = tiny_trainer(output)
    sibling = tmp_path / ".student.overwrite"

    with prepare_training_output(output, overwrite=True) as prepared:
        assert prepared.working_dir == sibling and prepared.resume_from is None
        with pytest.raises(OSError) as raised:
            with prepared.writing(trainer):
                assert trainer.args.output_dir == str(sibling)
                checkpoint(sibling, 2, options={})
                checkpoint(sibling, 4, complete=False)  # the disk filled up while it was written
                raise OSError(errno.ENOSPC, "No space left on device")
    assert str(raised.value) == (
        f"[Errno 28] Training into {sibling} failed (No space left on device); the last complete checkpoint is "
        f"{sibling / 'checkpoint-2'}; free space (or fix the cause) and run the same command (with "
        f"--overwrite_output_dir) to resume the replacement kept in {sibling}, or delete that folder to start over; "
        f"{output} is unchanged."
    )
    assert trainer.args.output_dir == str(output)
    assert contents(output) == {"model.safetensors": b"old"}
    assert entries(tmp_path) == [".student.overwrite", "student"]

    # The same command resumes the replacement from its last complete checkpoint, and swaps it in at the end.
    with prepare_training_output(output, overwrite=True) as prepared:
        assert prepared.resume_from == str(sibling / "checkpoint-2")
        with prepared.writing(trainer):
            (Path(trainer.args.output_dir) / "model.safetensors").write_bytes(b"new")
    assert sorted(contents(output)) == ["checkpoint-2/model.safetensors", "checkpoint-2/trainer_state.json",
                                        "model.safetensors", "training_record.json"]  # fmt: skip
    assert contents(output)["model.safetensors"] == b"new"
    assert entries(tmp_path) == ["student"]


@pytest.mark.slow
def test_one_job_per_output_folder(tmp_path):
    """A second job on a folder in use is refused at once, naming the folder and the job that holds it; the lock is
    the OS's, so a killed holder frees it, and a clean exit leaves no lock file."""
    output = tmp_path / "student"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from minialbert.folders import OutputLock; OutputLock.acquire({str(output)!r}); "
         "print('locked', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        for claim in (
            lambda: prepare_training_output(output, overwrite=False),
            lambda: write_folder(output, lambda staging: None),
        ):
            with pytest.raises(ValueError) as refused:
                claim()
            assert f"Output folder {str(output)!r} is in use by another job (process {holder.pid} on " in str(
                refused.value
            )
            assert "wait for it to end or choose another folder" in str(refused.value)
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):  # the command refuses at once, before its teacher or corpus loads
            assert main(["distill", "--output_dir", str(output)]) == 2
        assert f"is in use by another job (process {holder.pid} on " in errors.getvalue()
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".student.lock").exists()  # killed: its file stays, its lock does not
    with prepare_training_output(output, overwrite=False) as prepared:
        assert prepared.resume_from is None
    assert entries(tmp_path) == []


@pytest.mark.parametrize(
    "path, message",
    [
        ("a-file", "is a file; choose a folder"),
        ("/", "Output folder '/' is not empty"),
        ("/sys/minialbert-student", "cannot be written: '/sys' takes no new files ("),
    ],
)
def test_unusable_output_paths_are_refused_before_anything_is_written(path, message, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    output = tmp_path / path
    for claim in (lambda: prepare_training_output(output, overwrite=False), lambda: write_folder(output, print)):
        with pytest.raises(ValueError, match=re.escape(message)):
            claim()
    assert entries(tmp_path) == ["a-file"]


@pytest.mark.parametrize(
    "fault, message",
    [
        ("disk full while writing", "(No space left on device); the previous"),
        ("read-only folder", "(Read-only file system); the previous"),
    ],
)
def test_a_write_that_fails_leaves_the_previous_folder_and_names_the_cause(fault, message, tmp_path, monkeypatch):
    output = tmp_path / "onnx"
    output.mkdir()
    (output / "model.onnx").write_bytes(b"previous export")

    def write(staging: Path) -> None:
        (staging / "model.onnx").write_bytes(b"half a new exp")
        raise OSError(errno.ENOSPC, "No space left on device")

    if fault == "read-only folder":

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(OSError) as raised:
        write_folder(output, write, overwrite=True)
    assert f"Writing {output} failed {message}" in str(raised.value)
    assert contents(output) == {"model.onnx": b"previous export"}
    assert entries(tmp_path) == ["onnx"]


def test_a_full_disk_while_writing_a_student_or_an_export_keeps_the_previous_one(
    tiny_bert_path, tmp_path, monkeypatch
):
    """The real writers, cut off part way: `convert` after the weights (its tokenizer hits the full disk) and
    `export` after model.onnx (its int8 copy does)."""
    from transformers import PreTrainedTokenizerBase

    import minialbert.export
    from minialbert import ExportArguments, export_student
    from minialbert.convert import ConversionArguments
    from minialbert.convert_job import convert_and_save

    student = convert_and_save(tiny_bert_path, tmp_path / "student", ConversionArguments(embedding_size=16))
    export_student(student, tmp_path / "onnx")
    before = {name: contents(tmp_path / name) for name in ("student", "onnx")}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full)
        with pytest.raises(OSError, match=r"Writing .*student failed \(No space left on device\); the previous"):
            convert_and_save(tiny_bert_path, tmp_path / "student", ConversionArguments(embedding_size=8), True)
    with monkeypatch.context() as patch:
        patch.setattr(minialbert.export, "quantize", disk_full)
        with pytest.raises(OSError, match=r"Writing .*onnx failed \(No space left on device\); the previous"):
            export_student(student, tmp_path / "onnx", ExportArguments(quantize="int8"), overwrite=True)
    assert {name: contents(tmp_path / name) for name in ("student", "onnx")} == before
    assert entries(tmp_path) == ["onnx", "student"], "a staging folder was left"


RACE = """
import os, sys, time
from pathlib import Path
from minialbert.errors import BadInputError
from minialbert.folders import OutputLock

folder, inside, ready, racers, rounds = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < racers:  # every racer starts its first round at once, however slow its import
    time.sleep(0.001)
held = refused = both = 0
for _ in range(rounds):
    try:
        lock = OutputLock.acquire(folder)
    except BadInputError:
        refused += 1
        continue
    try:  # only a holder may be inside: a second one finds the file there
        os.close(os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        both += 1
    else:
        time.sleep(0.0002)
        os.unlink(inside)
    held += 1
    lock.release()
print(held, refused, both)
"""


@pytest.mark.slow
def test_two_jobs_racing_for_one_folder_never_both_hold_it(tmp_path):
    """Three processes take and release one folder's lock 400 times each, all at once: whenever one holds it, no
    other does (a file only a holder creates, exclusively, is never found there by another holder), and the race
    really happened (each was refused sometimes and held it sometimes)."""
    output, inside, ready = tmp_path / "student", tmp_path / "inside", tmp_path / "ready"
    ready.mkdir()
    racers = [
        subprocess.Popen([sys.executable, "-c", RACE, str(output), str(inside), str(ready), "3", "400"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    counts = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-2000:]
        counts.append(tuple(map(int, out.split())))
    assert all(both == 0 for _, _, both in counts), counts
    assert all(held > 0 and refused > 0 for held, refused, _ in counts), counts
    # filelock's rule: the lock file stays after release (deleting it could let a waiting job in beside a new one).
    assert sorted(path.name for path in tmp_path.iterdir()) == [".student.lock", "ready"]


def test_the_lock_file_stays_after_release_and_a_refused_job_leaves_the_holders_line(tmp_path):
    output = tmp_path / "student"
    lock = OutputLock.acquire(output)
    line = (tmp_path / ".student.lock").read_text()
    assert line.startswith(f"process {os.getpid()} on ")
    contender = subprocess.run(
        [sys.executable, "-c", f"from minialbert.folders import OutputLock; OutputLock.acquire({str(output)!r})"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert contender.returncode == 1 and f"is in use by another job ({line})" in contender.stderr
    assert (tmp_path / ".student.lock").read_text() == line, "the refused job truncated the holder's line"
    lock.release()
    assert (tmp_path / ".student.lock").exists()
    with prepare_training_output(output, overwrite=False) as prepared:  # taken again after release, at once
        assert prepared.resume_from is None


OPTIONS = {"learning_rate": 0.0005, "max_steps": 8, "num_train_epochs": 1.0, "seed": 42}


def finished_job(folder: Path, options: dict = OPTIONS, step: int = 8) -> Path:
    """A folder as a finished training job leaves it: checkpoints with their records, the result, the record last."""
    checkpoint(folder, step // 2, options=options)
    checkpoint(folder, step, options=options, max_steps=step, epoch=0.5)
    (folder / "model.safetensors").write_bytes(b"student")
    record = {"options": options, "train_seconds": 12.0, "resumed_from_steps": [], "global_step": step}
    (folder / "training_record.json").write_text(json.dumps(record))
    return folder


def test_a_finished_job_is_left_as_it_is_continued_to_a_later_end_or_refused_naming_the_options(tmp_path):
    output = finished_job(tmp_path / "student")
    before = contents(output)
    with prepare_training_output(output, overwrite=False, options=OPTIONS) as prepared:
        assert prepared.finished is not None and prepared.finished.global_step == 8
    assert contents(output) == before

    # A later end continues from the last checkpoint, carrying the record's time; the new options are recorded.
    later = OPTIONS | {"max_steps": 12}
    with prepare_training_output(output, overwrite=False, options=later) as prepared:
        assert prepared.finished is None and prepared.resume_from == str(output / "checkpoint-8")
        assert (prepared.record.options, prepared.record.train_seconds) == (later, 12.0)
    epochs = OPTIONS | {"max_steps": -1, "num_train_epochs": 2.0}  # 0.5 epochs done: two is later
    with prepare_training_output(output, overwrite=False, options=epochs) as prepared:
        assert prepared.resume_from == str(output / "checkpoint-8")

    for changed, message in [
        ({"max_steps": 6}, "holds a job that trained 8 steps: --max_steps 6 ends at or before step 8, which it "
                           "already reached. Raise --max_steps (or --num_train_epochs) to continue it"),
        ({"max_steps": -1, "num_train_epochs": 0.5}, "--num_train_epochs 0.5 ends at or before epoch 0.5"),
        ({"learning_rate": 0.001, "seed": 7}, "holds a job run with other options: --learning_rate 0.0005 "
                                              "(now 0.001), --seed 42 (now 7). Pass the folder's values to resume "
                                              "it, --overwrite_output_dir to start over, or choose another folder."),
    ]:  # fmt: skip
        with pytest.raises(BadInputError, match=re.escape(f"{output} {message}" if "holds" in message else message)):
            prepare_training_output(output, overwrite=False, options=OPTIONS | changed)
    assert contents(output) == before


def test_a_resume_under_other_options_is_refused_and_a_stale_replacement_starts_over(tmp_path, caplog):
    output = tmp_path / "student"
    checkpoint(output, 2, options=OPTIONS)
    with pytest.raises(BadInputError, match=re.escape("--seed 42 (now 7)")):
        prepare_training_output(output, overwrite=False, options=OPTIONS | {"seed": 7})
    with prepare_training_output(output, overwrite=False, options=OPTIONS | {"max_steps": 10}) as prepared:
        assert prepared.resume_from == str(output / "checkpoint-2")  # a new end: resumed

    sibling = tmp_path / ".student.overwrite"
    checkpoint(sibling, 4, options=OPTIONS)
    with prepare_training_output(output, overwrite=True, options=OPTIONS) as prepared:  # the same options: resumed
        assert prepared.resume_from == str(sibling / "checkpoint-4")
    with prepare_training_output(output, overwrite=True, options=OPTIONS | {"seed": 7}) as prepared:
        assert prepared.working_dir == sibling and prepared.resume_from is None and not sibling.exists()
    assert (
        f"{sibling}, the replacement an earlier run left, was started with other options (--seed 42 (now 7)): "
        "starting it over." in caplog.text
    )
    assert contents(output) == {
        "checkpoint-2/model.safetensors": b"weights",
        "checkpoint-2/trainer_state.json": (output / "checkpoint-2/trainer_state.json").read_bytes(),
    }


@pytest.mark.parametrize("cut", ["before the first rename", "between the renames", "before the old one is deleted"])
def test_a_swap_killed_at_any_point_is_completed_by_the_next_job_without_training(cut, tmp_path):
    """The states a kill inside `swap_in` leaves (the SIGKILL between the renames, in a real run: test_distill_job):
    the next job on the folder finds the finished replacement in place, or puts it there, and trains nothing."""
    output, sibling = finished_job(tmp_path / "student", OPTIONS | {"seed": 1}), tmp_path / ".student.overwrite"
    finished_job(sibling)
    (sibling / "model.safetensors").write_bytes(b"replacement")
    placeholder = tmp_path / ".student.old.x1y2"
    placeholder.mkdir()
    if cut != "before the first rename":
        os.replace(output, placeholder)
    if cut == "before the old one is deleted":
        os.replace(sibling, output)
    with prepare_training_output(output, overwrite=True, options=OPTIONS) as prepared:
        assert prepared.finished is not None and prepared.working_dir == output
    assert contents(output)["model.safetensors"] == b"replacement"
    assert entries(tmp_path) == ["student"]


def test_a_swap_killed_between_its_renames_puts_the_old_folder_back_when_its_replacement_is_unfinished(tmp_path):
    for claim in (lambda: prepare_training_output(tmp_path / "student", overwrite=False, options=OPTIONS),
                  lambda: write_folder(tmp_path / "student", print)):  # fmt: skip
        old = tmp_path / ".student.old.x1y2"
        old.mkdir()
        (old / "model.safetensors").write_bytes(b"student")
        (tmp_path / ".student.new.abc").mkdir()  # write_folder's staging, cut off
        with pytest.raises(BadInputError, match="is not empty"):
            claim()  # the old folder back in its place, refused without --overwrite_output_dir
        assert contents(tmp_path / "student") == {"model.safetensors": b"student"}
        assert entries(tmp_path) == ["student"]
        shutil.rmtree(tmp_path / "student")
