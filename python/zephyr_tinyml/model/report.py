"""Summary tables for a finished build (rich for terminals)."""

from __future__ import annotations

from rich.table import Table

from .pipeline import BuildResult
from .verify import describe_divergence


def summary_table(result: BuildResult) -> Table:
    """Accuracies, agreement, sizes, cost and stage times in one table."""
    v = result.verification
    table = Table(title=f"{result.spec.name}: model summary", show_header=True, header_style="bold")
    table.add_column("item")
    table.add_column("value", justify="right")
    def pct(value: float | None, why: str) -> str:
        return f"{value:.2f} %" if value is not None else f"n/a ({why})"

    no_labels = "no labelled data"
    no_float = "quantized .tflite given" if result.spec.model.file and result.spec.model.file.suffix == ".tflite" \
        else no_labels
    things = "images" if v.tflm_accuracy is not None else "inputs"
    kind = "16x8" if result.info.input.dtype == "int16" else "int8"  # TFLite's 16-bit-activation mode, or full int8
    rows = [
        ("float accuracy", pct(v.float_accuracy, no_float)),
        (f"{kind} TFLite accuracy (optimized kernels)", pct(v.tflite_accuracy, no_labels)),
        (f"{kind} TFLite accuracy (reference kernels)", pct(v.tflite_ref_accuracy, no_labels)),
        (f"{kind} TFLM accuracy", pct(v.tflm_accuracy, no_labels)),
        (f"float -> {kind} drop", f"{v.accuracy_drop:.2f} points" if v.float_accuracy is not None else "n/a"),
        (f"TFLM vs TFLite-reference: differing {things}", f"{v.ref_mismatches:,} / {v.images:,}"),
        ("  of which 1-LSB requantization rounding", f"{v.ref_rounding_mismatches:,}"
         + (f" (first differing op: {', '.join(f'{k} {n}' for k, n in v.ref_divergence_ops.items())})"
            if v.ref_divergence_ops else "")),
        ("  of which unexplained (fails the build)", f"{v.ref_unexplained_mismatches:,}"),
        ("  of which by design (TFLM's own kernel)", f"{v.ref_by_design_mismatches:,}"
         + (f": argmax agrees on {v.kernel_argmax_agreement:,} / {v.images:,}, outputs differ by up to "
            f"{v.kernel_max_abs_error:.4g} ({v.kernel_mean_abs_error:.3g} mean, dequantized); the device runs "
            f"TFLM's kernel" if v.ref_by_design_mismatches else "")),
        ("TFLM vs TFLite-optimized argmax agreement", f"{v.optimized_argmax_agreement:,} / {v.images:,}"),
        ("test inputs embedded for the device", f"{len(result.generated.test_labels) or result.spec.codegen.test_images}"
         + (" (labelled images)" if result.generated.test_labels else " (seeded random; device output checked "
                                                                       "against host TFLM)")),
        ("model (.tflite) bytes", f"{result.info.size:,}"),
        ("arena bytes (host TFLM needs -> generated)", f"{v.arena_host_bytes:,} -> {result.generated.arena_size:,}"),
        ("parameters", f"{result.params:,}"),
        ("MACs per inference", str(result.macs)),
        ("ops", ", ".join(result.info.unique_ops)),
        ("generated sources", str(result.generated.folder)),
    ]
    if result.quality is not None:  # a GAN's generator: no accuracies, the classifier's view instead
        rows = [row for row in rows if "accuracy" not in row[0] and "argmax" not in row[0]
                and not row[0].startswith("float ->")]
        for kind in ("float", "int8"):
            j = result.quality[kind]
            rows.insert(0, (f"{kind} generator: confidently classified (>= {j['confidence']:g})",
                            f"{j['confident_percent']:.1f} % of {j['images']:,}"))
            rows.insert(1, (f"{kind} generator: digit evenness (1 = even)",
                            f"{j['evenness']:.3f}  {j['histogram']}"))
        rows = [(name, value.replace(" (seeded random; device output checked against host TFLM)",
                                     " (latent vectors; every pixel checked against host TFLM)"))
                for name, value in rows]
    if v.first_divergence and v.first_divergence.get("op"):
        rows.insert(8, ("first differing layer (TFLM vs reference)", describe_divergence(v.first_divergence)))
    for name, value in rows:
        table.add_row(name, value)
    for stage, timing in result.timings.items():
        table.add_row(f"time: {stage}", f"{timing.seconds:.1f} s" + (" (cached)" if timing.cached else ""))
    table.add_row("time: total", f"{sum(t.seconds for t in result.timings.values()):.1f} s")
    return table
