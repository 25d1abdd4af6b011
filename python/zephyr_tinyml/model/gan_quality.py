"""Judging generated digits without a human: the project's MNIST classifier labels them.

Two numbers, as in the GAN literature's classifier-based scores (the Inception Score's two halves):
how many images the classifier is confident about (recognisable digits), and how evenly the ten
digits appear (a generator that collapsed onto a few digits scores low).  Evenness is the entropy
of the label histogram divided by log(classes): 1 when every digit is equally frequent, 0 when
only one digit is drawn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .data import normalize
from .spec import Spec

# Part of the quality stage's cache key: bump when what is measured changes.
QUALITY_METHOD = "classifier-confidence-evenness-v1"
LABELLED = 64  # images whose labels are kept (the first ones: the digit grid's)


@dataclass(frozen=True)
class Judgement:
    """The classifier's view of a set of generated images."""

    images: int
    confidence: float            # the threshold used
    confident_percent: float     # images whose top softmax probability >= confidence
    evenness: float              # normalized entropy of the label histogram (all images)
    histogram: list[int]         # images per label
    confident_histogram: list[int]
    labels: list[int]            # labels of the first images (LABELLED unless asked otherwise)
    confident: list[bool]        # whether each of those is confident

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def captions(self) -> list[str]:
        """A grid caption per labelled image: the label, with '?' when the classifier is not confident."""
        return [f"{label}" if sure else f"{label}?" for label, sure in zip(self.labels, self.confident)]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Judgement":
        return cls(**data)


def evenness(histogram: np.ndarray) -> float:
    """Entropy of the histogram's distribution / log(number of bins), in [0, 1]."""
    counts = np.asarray(histogram, dtype=np.float64)
    if counts.sum() == 0 or len(counts) < 2:
        return 0.0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(len(counts)))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def judge(classifier: Any, classifier_spec: Spec, pixels: np.ndarray, confidence: float,
          keep: int = LABELLED) -> Judgement:
    """Label uint8 images with ``classifier`` (its spec's normalization) and summarize; the labels of
    the first ``keep`` images are kept (for a captioned grid)."""
    x = normalize(pixels.reshape((-1,) + tuple(classifier_spec.dataset.input_shape)), classifier_spec.dataset.norm_scale,
                  classifier_spec.dataset.norm_offset)
    outputs = np.asarray(classifier.predict(x, batch_size=500, verbose=0), dtype=np.float64)
    # Our specs' classifiers give logits (SparseCategoricalCrossentropy from_logits); a softmax output
    # already sums to 1 and is kept as it is.
    probabilities = outputs if np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3) and outputs.min() >= 0 \
        else softmax(outputs)
    labels = probabilities.argmax(axis=1)
    sure = probabilities.max(axis=1) >= confidence
    classes = probabilities.shape[1]
    histogram = np.bincount(labels, minlength=classes)
    return Judgement(
        images=int(len(labels)), confidence=float(confidence),
        confident_percent=float(sure.mean() * 100.0), evenness=evenness(histogram),
        histogram=[int(c) for c in histogram],
        confident_histogram=[int(c) for c in np.bincount(labels[sure], minlength=classes)],
        labels=[int(v) for v in labels[:keep]], confident=[bool(v) for v in sure[:keep]])
