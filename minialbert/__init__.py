"""minialbert: turn a BERT teacher into a small recursive MiniAlbert student and share it on the Hub.

Importing the package registers `MiniAlbertConfig` and every head with transformers' Auto classes, and
registers each class for its Auto class so that `save_pretrained` copies the two code files beside the
weights: the saved folder then loads anywhere with `trust_remote_code=True`, without this package.

Only the config and model classes load with the package; every other public name loads its module on first use
(as transformers' own `__init__` does), so `import minialbert` does not pay for the Trainer, `datasets`, PEFT or
ONNX Runtime.
"""

from typing import TYPE_CHECKING

import transformers

from . import modeling_minialbert
from ._lazy import lazy_exports
from .configuration_minialbert import HEADS, MiniAlbertConfig
from .modeling_minialbert import (
    MiniAlbertForMaskedLM,
    MiniAlbertForMultipleChoice,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
    MiniAlbertPreTrainedModel,
)

__version__ = "0.1.0"

AUTO_CLASSES = {
    getattr(transformers, head.auto_class): getattr(modeling_minialbert, name) for name, head in HEADS.items()
}

transformers.AutoConfig.register(MiniAlbertConfig.model_type, MiniAlbertConfig, exist_ok=True)
MiniAlbertConfig.register_for_auto_class()
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(MiniAlbertConfig, model_class, exist_ok=True)
    model_class.register_for_auto_class(auto_class.__name__)

# Every other public name loads its module on first use.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "convert": ("ConversionArguments", "convert_bert_to_minialbert"),
        "errors": ("BadInputError", "FolderWriteError", "MissingExtraError"),
        "export_job": ("ExportArguments", "export_student"),
        "published": ("ImportArguments",),
        "published_job": ("import_published",),
        "runtimes": ("OnnxRuntimeModel", "RuntimeReport", "fastest_runtime"),
        "teacher": ("layer_map",),
        "tuning": ("enable_tuning", "load_tuned", "save_tuned"),
    },
)

if TYPE_CHECKING:
    from .convert import ConversionArguments, convert_bert_to_minialbert
    from .errors import BadInputError, FolderWriteError, MissingExtraError
    from .export_job import ExportArguments, export_student
    from .published import ImportArguments
    from .published_job import import_published
    from .runtimes import OnnxRuntimeModel, RuntimeReport, fastest_runtime
    from .teacher import layer_map
    from .tuning import enable_tuning, load_tuned, save_tuned

__all__ = [
    "AUTO_CLASSES",
    "BadInputError",
    "ConversionArguments",
    "ExportArguments",
    "FolderWriteError",
    "ImportArguments",
    "MiniAlbertConfig",
    "MiniAlbertForMaskedLM",
    "MiniAlbertForMultipleChoice",
    "MiniAlbertForQuestionAnswering",
    "MiniAlbertForSequenceClassification",
    "MiniAlbertForTokenClassification",
    "MiniAlbertModel",
    "MiniAlbertPreTrainedModel",
    "MissingExtraError",
    "OnnxRuntimeModel",
    "RuntimeReport",
    "convert_bert_to_minialbert",
    "enable_tuning",
    "export_student",
    "fastest_runtime",
    "import_published",
    "layer_map",
    "load_tuned",
    "save_tuned",
]
