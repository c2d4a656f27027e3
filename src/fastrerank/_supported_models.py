"""The rerankers fastrerank documents support for, with the facts one is picked by: :func:`list_supported_models`.

The facts are those of the README's "Supported models" table (a test keeps the two equal). The
table gives sizes as layers and hidden width; parameter counts and download sizes are not part
of it, so they are not given here either.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SupportedModel", "list_supported_models"]

_XLM_ROBERTA = "XLMRobertaForSequenceClassification"
_BERT = "BertForSequenceClassification"


@dataclass(frozen=True)
class SupportedModel:
    """A reranker fastrerank converts and runs, with its size, positions and recommended ``max_length``.

    Attributes:
        model: its Hugging Face hub id, as :class:`~fastrerank.Reranker` and :func:`~fastrerank.convert` take it.
        architecture: its transformers class, ``XLMRobertaForSequenceClassification`` (multilingual)
            or ``BertForSequenceClassification`` (the English ms-marco cross-encoders).
        layers: encoder layers.
        hidden_size: the encoder's width.
        max_positions: the most tokens one model call may hold (usable positions): the upper bound
            of ``max_length``.
        recommended_max_length: the ``max_length`` its authors score with, fastrerank's default.
    """

    model: str
    architecture: str
    layers: int
    hidden_size: int
    max_positions: int
    recommended_max_length: int


_SUPPORTED = (
    SupportedModel("BAAI/bge-reranker-v2-m3", _XLM_ROBERTA, 24, 1024, 8192, 512),
    SupportedModel("BAAI/bge-reranker-base", _XLM_ROBERTA, 12, 768, 512, 512),
    SupportedModel("BAAI/bge-reranker-large", _XLM_ROBERTA, 24, 1024, 512, 512),
    SupportedModel("netease-youdao/bce-reranker-base_v1", _XLM_ROBERTA, 12, 768, 512, 512),
    SupportedModel("cross-encoder/ms-marco-MiniLM-L-12-v2", _BERT, 12, 384, 512, 512),
    SupportedModel("cross-encoder/ms-marco-MiniLM-L-6-v2", _BERT, 6, 384, 512, 512),
    SupportedModel("cross-encoder/ms-marco-MiniLM-L-4-v2", _BERT, 4, 384, 512, 512),
    SupportedModel("cross-encoder/ms-marco-TinyBERT-L-2-v2", _BERT, 2, 128, 512, 512),
)


def list_supported_models() -> tuple[SupportedModel, ...]:
    """The rerankers fastrerank supports, each with its size, positions and recommended ``max_length``.

    Other checkpoints of the same two architectures with one label (a fine-tuned bge, for
    example) convert and run too; these are the ones documented, with a conversion recipe each.
    Nothing is downloaded: the facts ship with the package.

    Returns:
        A tuple of frozen :class:`SupportedModel`, the default model
        (:data:`fastrerank.DEFAULT_MODEL`) first.

    Example:
        >>> import fastrerank
        >>> fastrerank.list_supported_models()[0]
        SupportedModel(model='BAAI/bge-reranker-v2-m3', architecture='XLMRobertaForSequenceClassification', layers=24, hidden_size=1024, max_positions=8192, recommended_max_length=512)
        >>> next(m.model for m in fastrerank.list_supported_models() if m.max_positions > 512)
        'BAAI/bge-reranker-v2-m3'
    """
    return _SUPPORTED
