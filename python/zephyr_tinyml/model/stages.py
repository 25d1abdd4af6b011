"""The stage runner every model pipeline uses: timing, progress, and a content-addressed cache.

Each stage's result is stored under ``<work>/cache/<stage>-<key>/``, where the key hashes exactly
what the stage depends on (spec sections, data contents, upstream result, library versions). A
rerun with nothing changed reuses every entry. An entry is built in a temporary folder and renamed
into place, so an interrupted run never leaves a half-written one for the next run to trust.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from .. import __version__
from .codegen import Generated
from .spec import Spec
from .tflite_model import MacCount, ModelInfo
from .verify import Verification


class UI(Protocol):
    """What the pipeline reports while it runs (the CLI renders it with rich)."""

    def stage(self, name: str, detail: str = "") -> Any: ...  # context manager
    def epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None: ...
    def batch(self, done: int, total: int) -> None: ...
    def images(self, done: int, total: int) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class StageTime:
    """Wall seconds of one stage and whether it came from the cache."""

    seconds: float
    cached: bool = False


@dataclass
class BuildOptions:
    """Where to read data and write outputs, and whether to ignore the training cache."""

    work_dir: Path
    data_dir: Path | None = None
    out_dir: Path | None = None
    retrain: bool = False
    allow_download: bool = True


@dataclass
class BuildResult:
    """Everything the summary, the firmware stage and the tests need."""

    spec: Spec
    work_dir: Path
    tflite_path: Path
    info: ModelInfo
    verification: Verification
    generated: Generated
    params: int
    macs: MacCount
    timings: dict[str, StageTime] = field(default_factory=dict)
    data_notes: tuple[str, ...] = ()
    quality: dict[str, Any] | None = None  # a GAN's generated images as its classifier sees them
    model_source: str = "trained"          # "trained", "committed" (samples/<model>/generated), "file"

    def summary(self) -> dict[str, Any]:
        """Plain figures for reports (JSON-safe)."""
        v = self.verification
        return {
            "model": self.spec.name,
            "model_source": self.model_source,
            "data_notes": list(self.data_notes),
            "float_accuracy": v.float_accuracy,
            "tflite_int8_accuracy": v.tflite_accuracy,
            "tflite_ref_int8_accuracy": v.tflite_ref_accuracy,
            "tflm_int8_accuracy": v.tflm_accuracy,
            "accuracy_drop_points": v.accuracy_drop,
            "test_images": v.images,
            "tflm_vs_tflite_ref_mismatches": v.ref_mismatches,
            "tflm_vs_tflite_ref_rounding_mismatches": v.ref_rounding_mismatches,
            "tflm_vs_tflite_ref_unexplained_mismatches": v.ref_unexplained_mismatches,
            "tflm_vs_tflite_ref_divergence_ops": v.ref_divergence_ops,
            "tflm_vs_tflite_ref_first_divergence": v.first_divergence,
            "tflm_vs_tflite_ref_by_design_mismatches": v.ref_by_design_mismatches,
            "tflm_vs_tflite_ref_argmax_agreement": v.kernel_argmax_agreement,
            "tflm_vs_tflite_ref_max_abs_error": v.kernel_max_abs_error,
            "tflm_vs_tflite_ref_mean_abs_error": v.kernel_mean_abs_error,
            "tflm_vs_tflite_optimized_argmax_agreement": v.optimized_argmax_agreement,
            "tflm_vs_tflite_optimized_vector_differences": v.optimized_vector_differences,
            "model_bytes": self.info.size,
            "arena_host_measured_bytes": v.arena_host_bytes,
            "arena_bytes": self.generated.arena_size,
            "parameters": self.params,
            "macs_per_inference": self.macs.total,
            "macs_not_counted_ops": list(self.macs.not_counted),
            "ops": list(self.info.unique_ops),
            "generated_dir": str(self.generated.folder),
            "stage_seconds": {k: round(t.seconds, 2) for k, t in self.timings.items()},
            "stage_cached": {k: t.cached for k, t in self.timings.items()},
            **({"quality": self.quality} if self.quality is not None else {}),
        }


def stage_key(*parts: str) -> str:
    """A cache key from everything a stage depends on."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


def library_versions() -> str:
    """TensorFlow's, Keras' and our version: part of every key whose result they compute."""
    import keras
    import tensorflow as tf

    return f"tf{tf.__version__}-keras{keras.__version__}-tinyml{__version__}"


@contextmanager
def cache_entry(root: Path, name: str) -> Iterator[Path]:
    """A temporary folder that becomes ``root/name`` only if the block succeeds."""
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class StageTimer:
    """The running stage: set ``cached`` when its result came from the cache."""

    name: str
    cached: bool = False


class Stages:
    """Runs a pipeline's stages under one UI and cache folder, recording each one's time.

    ``with stages.stage("verify", detail) as timer:`` times a stage and shows it;
    ``stages.cached(timer, entry, marker, compute)`` inside it returns the cache entry, computing
    it (``compute(folder)`` writes the files) only when ``marker`` is not there yet.
    """

    def __init__(self, ui: UI, cache: Path):
        self.ui, self.cache = ui, Path(cache)
        self.timings: dict[str, StageTime] = {}

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[StageTimer]:
        timer = StageTimer(name)
        started = time.perf_counter()
        with self.ui.stage(name, detail):
            try:
                yield timer
            finally:
                self.timings[name] = StageTime(time.perf_counter() - started, timer.cached)

    def cached(self, timer: StageTimer, entry: str, marker: str, compute: Callable[[Path], None],
               force: bool = False) -> Path:
        """``cache/entry`` with ``marker`` in it; ``compute`` fills a fresh one when absent or ``force``."""
        folder = self.cache / entry
        if (folder / marker).is_file() and not force:
            timer.cached = True
            return folder
        with cache_entry(self.cache, entry) as tmp:
            compute(tmp)
        return folder
