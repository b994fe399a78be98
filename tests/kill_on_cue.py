"""Run a training command and SIGKILL it where MINIALBERT_TEST_KILL says: "step:N" once step N has ended,
"saving:N" while checkpoint-N is half written (its weights on disk, its optimiser and trainer state not yet), or
nothing (empty: the command runs to its end). "SIGTERM:N" and "SIGINT:N" send that signal instead, while step N
runs (as it begins), as a scheduler or Ctrl-C would; "SIGINT:end" as training ends, before the final scoring.
"swap:between" SIGKILLs an --overwrite_output_dir job inside the swap of its finished replacement: the old folder
moved aside, the new one not yet in its place.

`python tests/kill_on_cue.py minialbert ARGS...` runs the `minialbert` command; `python tests/kill_on_cue.py
SCRIPT.py ARGS...` runs a script (an example). `conftest.run_training` starts it.
"""

import os
import runpy
import signal
import sys

from transformers import Trainer, TrainerCallback

where, _, step = os.environ.get("MINIALBERT_TEST_KILL", "").partition(":")


class KillAfterStep(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if where in ("SIGTERM", "SIGINT") and step.isdigit() and state.global_step + 1 == int(step):
            os.kill(os.getpid(), getattr(signal, where))

    def on_step_end(self, args, state, control, **kwargs):
        if where == "step" and state.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_end(self, args, state, control, **kwargs):
        if where == "SIGINT" and step == "end":
            os.kill(os.getpid(), signal.SIGINT)


original_init, original_save = Trainer.__init__, Trainer._save_optimizer_and_scheduler


def init_with_kill(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self.add_callback(KillAfterStep())


def save_with_kill(self, output_dir):
    if where == "saving" and self.state.global_step == int(step):
        os.kill(os.getpid(), signal.SIGKILL)
    original_save(self, output_dir)


def replace_with_kill(source, target):
    if where == "swap" and step == "between" and os.path.basename(source).endswith(".overwrite"):
        os.kill(os.getpid(), signal.SIGKILL)
    original_replace(source, target)


original_replace = os.replace
os.replace = replace_with_kill
Trainer.__init__ = init_with_kill  # subclasses (DistillationTrainer) reach it through super().__init__
Trainer._save_optimizer_and_scheduler = save_with_kill
if sys.argv[1] == "minialbert":
    from minialbert import cli

    sys.exit(cli.main(sys.argv[2:]))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
