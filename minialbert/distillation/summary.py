"""`DistillationSummary`: what a `minialbert distill` run reports, written beside the student as
`distillation_summary.json`, printed at the end of the run, and read back by the model card (`minialbert.hub`)."""

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from ..errors import BadInputError
from .recipes import Recipe


@dataclass
class DistillationSummary:
    """One distillation run: teacher and student, recipe, data, training and agreement with the teacher.

    The agreement reports (`at_initialisation`, `after_distillation`) are `agreement_report`'s; `agreement_by_depth`
    is `agreement_by_depth`'s; `agreement_curve` holds the `SentenceAgreementCallback` points, with the step and the
    training seconds so far.
    """

    FILE_NAME: ClassVar[str] = "distillation_summary.json"

    teacher: str
    teacher_parameters: int
    student_parameters: int
    layer_map: list[int]
    recipe: Recipe
    bf16_autocast: bool
    train_samples: int
    held_out_windows: int
    out_of_domain_sentences: int
    # broad_sentence_spearman: these sources' held-out sentences, pooled; which of them the corpus trained on.
    broad_held_out_sentences: dict[str, int]
    trained_on_sources: list[str]
    global_step: int
    processes: int
    train_runtime_seconds: float
    train_tokens_per_second: int
    at_initialisation: dict[str, float]
    after_distillation: dict[str, float]
    # Each depth a user may load the student at (num_recursions), scored on the same sentences.
    agreement_by_depth: list[dict[str, float]]
    agreement_curve: list[dict[str, float]]
    # The teacher's own scores, where one exists (masked-LM accuracy, with a head): the report has them.
    teacher_figures: dict[str, float]
    # What the run took from start to summary (loading, conversion, scoring included; a resumed job: its last run)
    # and on what machine (`minialbert.devices.machine`): times compare only between runs of one machine. Absent
    # from older summaries.
    wall_clock_seconds: float | None = None
    machine: dict = field(default_factory=dict)
    # The steps a resumed run continued from, one per resume (`train_runtime_seconds` adds up every segment's).
    resumed_from_steps: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, summary: dict) -> "DistillationSummary":
        names = [each.name for each in fields(cls) if each.name in summary]
        required = [each.name for each in fields(cls) if each.default is MISSING and each.default_factory is MISSING]
        missing = [name for name in required if name not in summary]
        if missing:
            raise BadInputError(
                f"A distillation summary without {', '.join(missing)}: not one `minialbert distill` wrote; distil "
                "again, or remove the file."
            )
        return cls(**{name: summary[name] for name in names} | {"recipe": Recipe(**summary["recipe"])})

    def save(self, folder: str | os.PathLike) -> None:
        Path(folder, self.FILE_NAME).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "DistillationSummary | None":
        """The summary in `folder`; None when the folder has none."""
        path = Path(folder, cls.FILE_NAME)
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise BadInputError(f"{path} is not a distillation summary ({error}).") from error

    def where(self) -> str:
        """`; 850 s in all on AMD EPYC (native bf16)`: the wall clock and the machine, where recorded."""
        if self.wall_clock_seconds is None:
            return ""
        kind = "native bf16" if self.machine.get("native_bf16") else "no native bf16"
        run = "its last run took " if self.resumed_from_steps else ""
        return f"; {run}{self.wall_clock_seconds:.0f} s in all on {self.machine.get('cpu', 'this machine')} ({kind})"

    def resumes(self) -> str:
        """`; resumed 2 times, from steps 2 and 6`, or nothing for a run in one go."""
        steps = self.resumed_from_steps
        if not steps:
            return ""
        if len(steps) == 1:
            return f"; resumed once, from step {steps[0]}"
        return f"; resumed {len(steps)} times, from steps {', '.join(map(str, steps[:-1]))} and {steps[-1]}"

    def describe(self) -> str:
        """The summary as `minialbert distill` prints it."""
        broad = self.broad_held_out_sentences
        lines = [
            f"teacher {self.teacher}: {self.teacher_parameters / 1e6:.2f}M parameters; "
            f"student: {self.student_parameters / 1e6:.2f}M; layer map {self.layer_map}",
            f"{self.recipe.describe()}; bf16 autocast {'on' if self.bf16_autocast else 'off'}",
            f"{self.global_step} steps on {self.train_samples} training samples in {self.train_runtime_seconds} s "
            f"({self.train_tokens_per_second} tokens/s{self.where()}{self.resumes()}); "
            f"held-out: {self.held_out_windows} windows, "
            f"{self.out_of_domain_sentences} out-of-domain sentences, {sum(broad.values())} sentences of the broad "
            f"sources ({', '.join(broad) or 'none'}; trained on: {', '.join(self.trained_on_sources) or 'none'})",
            f"{'metric':<22} {'initialisation':>14} {'distilled':>10} {'teacher':>8}",
        ]
        for name, value in self.after_distillation.items():
            if name.startswith("teacher_"):
                continue
            own = self.teacher_figures.get(name.removeprefix("student_"), "") if name.startswith("student_") else ""
            own = f"{own:>8.4f}" if own != "" else f"{'':>8}"
            lines.append(f"{name:<22} {self.at_initialisation[name]:>14.4f} {value:>10.4f} {own}")
        for scores in self.agreement_by_depth:
            depth = scores["num_recursions"]
            figures = ", ".join(f"{name} {value:.4f}" for name, value in scores.items() if name != "num_recursions")
            lines.append(f"at {depth} recursion{'s' if depth > 1 else ''}: {figures}")
        return "\n".join(lines)
