"""The classification head, applied in numpy to the first token's hidden state.

``XLMRobertaClassificationHead``: ``out_proj(tanh(dense(h[:, 0])))`` (dropout is inactive at
inference). CTranslate2 drops it when converting, so fastrerank keeps it in ``head.safetensors``.
BERT's pooler and classifier, ``classifier(tanh(pooler.dense(h[:, 0])))``, are the same function:
conversion stores them under the same names (``fastrerank._conversion.bert``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CorruptModelError

__all__ = ["ClassificationHead", "sigmoid"]


class ClassificationHead:
    """``tanh(h @ W1.T + b1) @ w2.T + b2`` in float32.

    The products run in numpy's own loops (``einsum``), never in BLAS: OpenBLAS (numpy's BLAS)
    splits even these small products across its threads, which then busy-wait after each one,
    taking a core from CTranslate2's next batch. What that cost is measured in
    ``benchmarks/RESULTS.md`` ("head in BLAS vs numpy loops").
    """

    def __init__(self, dense_weight: np.ndarray, dense_bias: np.ndarray, out_weight: np.ndarray, out_bias: np.ndarray) -> None:
        self._dense_t = np.ascontiguousarray(dense_weight.T, dtype=np.float32)
        self._dense_bias = dense_bias.astype(np.float32)
        self._out = out_weight.reshape(-1).astype(np.float32)
        self._out_bias = np.float32(out_bias.reshape(-1)[0])
        self.hidden_size = self._dense_t.shape[0]

    @classmethod
    def from_file(cls, path: Path, hidden_size: int) -> ClassificationHead:
        """Load ``head.safetensors`` and check its shapes against ``hidden_size``."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(str(path))
            head = cls(
                tensors["classifier.dense.weight"], tensors["classifier.dense.bias"],
                tensors["classifier.out_proj.weight"], tensors["classifier.out_proj.bias"],
            )
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            raise CorruptModelError(f"{path.name} cannot be read ({err}); re-convert with force=True") from err
        if head._dense_t.shape != (hidden_size, hidden_size) or head._out.shape != (hidden_size,):
            raise CorruptModelError(f"{path.name} does not match hidden size {hidden_size}; re-convert with force=True")
        return head

    def __call__(self, first_token_states: np.ndarray) -> np.ndarray:
        """Logits, one per row of ``first_token_states`` (shape ``[rows, hidden]``)."""
        states = first_token_states.astype(np.float32, copy=False)
        hidden = np.tanh(np.einsum("rh,ho->ro", states, self._dense_t, optimize=False) + self._dense_bias)
        return np.einsum("rh,h->r", hidden, self._out, optimize=False) + self._out_bias


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function in float64, without overflow warnings for large negative logits."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64)))
