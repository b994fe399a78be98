"""minialbert: turn a BERT teacher into a small recursive MiniAlbert student and share it on the Hub.

Importing the package registers `MiniAlbertConfig` and every head with transformers' Auto classes, and
registers each class for its Auto class so that `save_pretrained` copies the two code files beside the
weights: the saved folder then loads anywhere with `trust_remote_code=True`, without this package.
"""

import transformers

from . import modeling_minialbert
from .configuration_minialbert import HEADS, MiniAlbertConfig
from .convert import ConversionArguments, convert_bert_to_minialbert, layer_map
from .export import ExportArguments, OnnxRuntimeModel, export_onnx
from .modeling_minialbert import (
    MiniAlbertForMaskedLM,
    MiniAlbertForMultipleChoice,
    MiniAlbertForQuestionAnswering,
    MiniAlbertForSequenceClassification,
    MiniAlbertForTokenClassification,
    MiniAlbertModel,
    MiniAlbertPreTrainedModel,
)
from .published import ImportArguments, import_published
from .runtimes import RuntimeReport, fastest_runtime
from .tuning import enable_tuning, load_tuned, save_tuned

__version__ = "0.1.0"

AUTO_CLASSES = {
    getattr(transformers, head.auto_class): getattr(modeling_minialbert, name) for name, head in HEADS.items()
}

transformers.AutoConfig.register(MiniAlbertConfig.model_type, MiniAlbertConfig, exist_ok=True)
MiniAlbertConfig.register_for_auto_class()
for auto_class, model_class in AUTO_CLASSES.items():
    auto_class.register(MiniAlbertConfig, model_class, exist_ok=True)
    model_class.register_for_auto_class(auto_class.__name__)

__all__ = [
    "AUTO_CLASSES",
    "ConversionArguments",
    "ExportArguments",
    "ImportArguments",
    "MiniAlbertConfig",
    "MiniAlbertForMaskedLM",
    "MiniAlbertForMultipleChoice",
    "MiniAlbertForQuestionAnswering",
    "MiniAlbertForSequenceClassification",
    "MiniAlbertForTokenClassification",
    "MiniAlbertModel",
    "MiniAlbertPreTrainedModel",
    "OnnxRuntimeModel",
    "RuntimeReport",
    "convert_bert_to_minialbert",
    "enable_tuning",
    "export_onnx",
    "fastest_runtime",
    "import_published",
    "layer_map",
    "load_tuned",
    "save_tuned",
]
