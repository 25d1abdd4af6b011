"""On-device evaluation: stream test images to the board, compare its int8 outputs with host TFLM.

The device runs TFLM with the same kernels as the host interpreter, so every output vector must be
identical, element by element; any difference is a firmware, toolchain or model-packaging fault
that accuracy alone would hide.  Accuracies of the device, host TFLM, int8 TFLite and (when the
Keras model is at hand) the float model are all taken on the same images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .link import LinkError
from .protocol import Info, Result, crc16_fast
from .session import DeviceError, LinkStats, Session
from ..model.op_trace import describe, first_difference, parse_trace
from ..model.verify import confusion_matrix, run_tflite, run_tflm

Progress = Callable[[int, int, int], None]  # done, total, failed so far
MAX_CONSECUTIVE_FAILURES = 5


@dataclass
class StreamOutcome:
    """What came back for each requested image; answered + failed + not sent = requested."""

    requested: int
    results: dict[int, Result]          # position in the stream -> device result
    failed: dict[int, list[str]]        # position -> why each attempt failed
    not_sent: list[int]                 # positions never sent because the run was aborted
    aborted: str | None
    seconds: float
    stats: LinkStats


def check_device_model(info: Info, tflite: bytes, input_size: int, classes: int, origin: str) -> None:
    """Refuse to compare with a ``.tflite`` that is not the model the device runs."""
    problems = []
    if info.model_size != len(tflite) or info.model_crc != crc16_fast(tflite):
        problems.append(f"its model has {info.model_size} bytes with CRC 0x{info.model_crc:04x}, {origin} has "
                        f"{len(tflite)} bytes with CRC 0x{crc16_fast(tflite):04x}")
    if info.input_size != input_size or info.classes != classes:
        problems.append(f"it takes {info.input_size} input values and gives {info.classes} classes, the model "
                        f"{input_size} and {classes}")
    if problems:
        raise DeviceError("the device runs a different model than the host compares with: " + "; ".join(problems)
                          + ". Run `tinyml build <model>` so the generated sources match the .tflite, then "
                            "rebuild (and flash) samples/mnist_eval.")


def stream(session: Session, inputs: np.ndarray, progress: Progress | None = None,
           max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES) -> StreamOutcome:
    """Send every input once (with the session's retries) and collect the device's answers.

    Stops early when ``max_consecutive_failures`` images in a row fail: the device is gone, and
    waiting out every remaining image's retries would only delay the report.
    """
    results: dict[int, Result] = {}
    failed: dict[int, list[str]] = {}
    aborted: str | None = None
    consecutive = 0
    started = time.perf_counter()
    position = 0
    for position, image in enumerate(inputs):
        try:
            exchange = session.request(image)
        except LinkError as exc:  # QEMU exited, port unplugged: keep what came back
            failed[position] = [str(exc)]
            aborted = str(exc)
            break
        if exchange.ok:
            assert isinstance(exchange.reply, Result)
            results[position] = exchange.reply
            consecutive = 0
        else:
            failed[position] = exchange.problems
            consecutive += 1
        if progress:
            progress(position + 1, len(inputs), len(failed))
        if consecutive >= max_consecutive_failures:
            aborted = (f"{consecutive} images in a row failed after {session.retries} retries each; "
                       f"the device stopped answering")
            break
    sent = position + 1 if len(inputs) else 0
    return StreamOutcome(len(inputs), results, failed, list(range(sent, len(inputs))), aborted,
                         time.perf_counter() - started, session.stats)


@dataclass
class Mismatch:
    """One image whose device output vector differs from host TFLM."""

    test_index: int
    device: list[int]
    host: list[int]

    @property
    def max_difference(self) -> int:
        return int(np.max(np.abs(np.array(self.device) - np.array(self.host))))


@dataclass
class EvalReport:
    """Every figure of one on-device evaluation (percentages in percent, times in seconds)."""

    board: str
    link: str
    images: int
    answered: int
    failed: dict[int, list[str]]        # test-set index -> reasons
    not_sent: int
    aborted: str | None
    mismatches: list[Mismatch]
    class_field_errors: int             # results whose class is not the argmax of their outputs
    device_accuracy: float
    tflm_accuracy: float
    tflite_accuracy: float
    float_accuracy: float | None
    confusion: list[list[int]]
    labels: tuple[str, ...]
    cycles_mean: float
    cycles_min: int
    cycles_max: int
    cycles_per_second: int
    stream_seconds: float
    images_per_second: float
    stats: dict[str, Any]
    device: dict[str, Any]
    wall_seconds: float = 0.0           # the whole command, set by the caller
    extra: dict[str, Any] = field(default_factory=dict)
    differing_op: str = ""              # the first mismatch traced op by op on the device (name_differing_op)
    tensor_type: str = "int8"           # the model's (a 16x8 model's: int16)

    @property
    def passed(self) -> bool:
        """Every image answered, every output vector identical to host TFLM."""
        return (not self.mismatches and not self.failed and not self.not_sent
                and not self.class_field_errors and self.answered == self.images)

    @property
    def us_per_inference(self) -> float:
        return self.cycles_mean / self.cycles_per_second * 1e6 if self.cycles_per_second else 0.0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["failed"] = {str(k): v for k, v in self.failed.items()}
        data["mismatches"] = [dict(m.__dict__, max_difference=m.max_difference) for m in self.mismatches]
        data["labels"] = list(self.labels)
        data["passed"] = self.passed
        data["mismatch_count"] = len(self.mismatches)
        data["us_per_inference"] = self.us_per_inference
        return data


def compare(outcome: StreamOutcome, indices: np.ndarray, labels: np.ndarray, tflm_outputs: np.ndarray,
            tflite_outputs: np.ndarray, float_predictions: np.ndarray | None, info: Info,
            class_labels: tuple[str, ...], board: str, link: str, tensor_type: str = "int8") -> EvalReport:
    """Device answers vs host TFLM (element by element) and the accuracies on the answered images
    (``tensor_type``: the model's input/output type, for the report's labels)."""
    positions = np.array(sorted(outcome.results), dtype=np.int64)
    classes = tflm_outputs.shape[1]
    device = np.array([outcome.results[p].outputs for p in positions], dtype=np.int64).reshape(
        len(positions), classes)
    host = tflm_outputs[positions].astype(np.int64)
    truth = labels[positions].astype(np.int64)
    differs = np.flatnonzero(np.any(device != host, axis=1))
    mismatches = [Mismatch(int(indices[positions[i]]), device[i].tolist(), host[i].tolist()) for i in differs]
    reported = np.array([outcome.results[p].predicted for p in positions], dtype=np.int64)
    device_pred = device.argmax(axis=1) if len(positions) else reported
    cycles = np.array([outcome.results[p].cycles for p in positions], dtype=np.int64)

    def accuracy(predictions: np.ndarray) -> float:
        return float(np.mean(predictions == truth) * 100.0) if len(truth) else 0.0

    return EvalReport(
        board=board, link=link, images=outcome.requested, answered=len(positions),
        failed={int(indices[p]): reasons for p, reasons in outcome.failed.items()},
        not_sent=len(outcome.not_sent), aborted=outcome.aborted, mismatches=mismatches,
        class_field_errors=int(np.sum(reported != device_pred)),
        device_accuracy=accuracy(reported),
        tflm_accuracy=accuracy(host.argmax(axis=1)) if len(positions) else 0.0,
        tflite_accuracy=accuracy(tflite_outputs[positions].argmax(axis=1)) if len(positions) else 0.0,
        float_accuracy=None if float_predictions is None else accuracy(float_predictions[positions]),
        confusion=confusion_matrix(truth, reported, len(class_labels)).tolist(),
        labels=tuple(class_labels),
        cycles_mean=float(cycles.mean()) if len(cycles) else 0.0,
        cycles_min=int(cycles.min()) if len(cycles) else 0,
        cycles_max=int(cycles.max()) if len(cycles) else 0,
        cycles_per_second=info.cycles_per_second,
        stream_seconds=outcome.seconds,
        images_per_second=len(positions) / outcome.seconds if outcome.seconds else 0.0,
        stats=outcome.stats.to_json(),
        device={**device_facts(info), "classes": info.classes},
        tensor_type=tensor_type,
    )


def device_facts(info: Info) -> dict[str, Any]:
    """What the device said it runs (its info frame), for a report."""
    return {"model_bytes": info.model_size, "model_crc": f"0x{info.model_crc:04x}", "arena_size": info.arena_size,
            "arena_used": info.arena_used, "input_size": info.input_size}


def host_references(tflite: bytes, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantized outputs of host TFLM (the ground truth) and of TFLite's default kernels."""
    return run_tflm(tflite, inputs), run_tflite(tflite, inputs, reference=False)


def report_text(report: EvalReport) -> str:
    """The report as plain text (what ``--format text`` prints after the progress bar)."""
    lines = _outcome_lines("on-device evaluation", "images", report.board, report.link, report.images,
                           report.answered, len(report.failed), report.not_sent, report.aborted)
    kind = report.tensor_type if report.tensor_type == "int8" else "16x8"
    lines += [
        f"  vs host TFLM     {len(report.mismatches):>8,}   images with any {report.tensor_type} output different"
        + ("" if not report.class_field_errors else f"; {report.class_field_errors} class fields wrong"),
        "  accuracy (same images)",
        f"    device {kind:<8}{report.device_accuracy:>8.2f} %",
        f"    host TFLM {kind:<5}{report.tflm_accuracy:>8.2f} %",
        f"    TFLite {kind:<8}{report.tflite_accuracy:>8.2f} %",
        "    float model    " + (f"{report.float_accuracy:>8.2f} %" if report.float_accuracy is not None
                                 else "       - (none at hand: no .keras in the work dir, or a .pt2/.onnx "
                                      "without the [torch] extra)"),
        f"  cycles/inference {report.cycles_mean:>10,.0f} mean, {report.cycles_min:,} min, {report.cycles_max:,} max"
        f" ({report.us_per_inference / 1000:.2f} ms at {report.cycles_per_second / 1e6:g} MHz)",
        f"  throughput       {report.images_per_second:>8.2f} images/s ({report.stream_seconds:.1f} s streaming"
        + (f", {report.wall_seconds:.1f} s whole run)" if report.wall_seconds else ")"),
        f"  link             {report.stats['frames_sent']:,} frames sent, {report.stats['retries']} retries, "
        f"{report.stats['timeouts']} timeouts, errors {report.stats['error_replies'] or 0}, "
        f"{report.stats['corrupt_replies']} damaged and {report.stats['stale_replies']} stale replies",
    ]
    width = max(len(label) for label in report.labels)
    lines.append("  confusion (rows: true, columns: device prediction)")
    lines.append("    " + " " * width + " " + " ".join(f"{label:>5}" for label in report.labels))
    for label, row in zip(report.labels, report.confusion):
        lines.append(f"    {label:>{width}} " + " ".join(f"{count:>5}" for count in row))
    for mismatch in report.mismatches[:5]:
        lines.append(f"  MISMATCH test image {mismatch.test_index}: device {mismatch.device} host {mismatch.host}")
    if report.differing_op:
        lines.append(f"  WHICH OP         {report.differing_op}")
    lines += _failed_lines("test image", report.failed)
    lines.append("  PASS: every output vector equals host TFLM" if report.passed else "  FAIL")
    return "\n".join(lines)


def _outcome_lines(title: str, noun: str, board: str, link: str, requested: int, answered: int, failed: int,
                   not_sent: int, aborted: str | None) -> list[str]:
    """The first lines of both reports: where it ran and what became of each input."""
    lines = [f"{title}: {board} over {link}",
             f"  {noun:<16} {requested:>8,}   answered {answered:,}, failed {failed}, not sent {not_sent}"]
    if aborted:
        lines.append(f"  ABORTED          {aborted}")
    return lines


def _failed_lines(noun: str, failed: dict[int, list[str]]) -> list[str]:
    """The first five failed inputs and why, for both reports."""
    return [f"  FAILED {noun} {index}: " + "; ".join(reasons) for index, reasons in list(failed.items())[:5]]


def name_differing_op(session: Session, model_input: np.ndarray, tflite: bytes, kernels: str,
                      input_name: str) -> str:
    """Send one input that differed as a trace request and name the first op whose output differs.

    The device prints the input and every op's output tensor before its reply (tinyml::TraceInvoke);
    host TFLM runs the same input with every intermediate tensor readable (``model/op_trace.py``).
    """
    exchange, lines = session.trace(model_input)
    trace = parse_trace("\n".join(lines))
    if trace is None or not trace.complete:
        problem = "; ".join(exchange.problems) or "no OPTRACE lines"
        return (f"the device sent no complete op trace for {input_name} ({problem}): an eval app built before "
                f"trace requests existed? Rebuild samples/mnist_eval from this checkout")
    return describe(first_difference(tflite, trace), kernels, input_name)


@dataclass
class OutputsReport:
    """An on-device run of a model that is not a classifier (a generator): whole outputs vs host TFLM."""

    board: str
    link: str
    inputs: int
    answered: int
    failed: dict[int, list[str]]
    not_sent: int
    aborted: str | None
    mismatches: list[int]               # input positions whose outputs differ from host TFLM
    differing_elements: int             # output bytes that differ, over all answered inputs
    output_size: int
    cycles_mean: float
    cycles_per_second: int
    stream_seconds: float
    stats: dict[str, Any]
    device: dict[str, Any]
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    differing_op: str = ""              # the first mismatch traced op by op on the device (name_differing_op)

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.failed and not self.not_sent and self.answered == self.inputs

    @property
    def us_per_inference(self) -> float:
        return self.cycles_mean / self.cycles_per_second * 1e6 if self.cycles_per_second else 0.0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["failed"] = {str(k): v for k, v in self.failed.items()}
        data["passed"] = self.passed
        data["us_per_inference"] = self.us_per_inference
        return data


def compare_outputs(outcome: StreamOutcome, tflm_outputs: np.ndarray, info: Info, board: str,
                    link: str) -> tuple[OutputsReport, np.ndarray]:
    """Device outputs vs host TFLM's, byte for byte; also the device's outputs (answered inputs, in order)."""
    positions = np.array(sorted(outcome.results), dtype=np.int64)
    size = tflm_outputs.reshape(len(tflm_outputs), -1).shape[1]
    device = np.array([outcome.results[p].outputs for p in positions], dtype=np.int64).reshape(len(positions), size)
    host = tflm_outputs.reshape(len(tflm_outputs), -1)[positions]
    differs = device != host
    cycles = np.array([outcome.results[p].cycles for p in positions], dtype=np.int64)
    report = OutputsReport(
        board=board, link=link, inputs=outcome.requested, answered=len(positions),
        failed={int(p): reasons for p, reasons in outcome.failed.items()}, not_sent=len(outcome.not_sent),
        aborted=outcome.aborted, mismatches=[int(positions[i]) for i in np.flatnonzero(differs.any(axis=1))],
        differing_elements=int(differs.sum()), output_size=size,
        cycles_mean=float(cycles.mean()) if len(cycles) else 0.0, cycles_per_second=info.cycles_per_second,
        stream_seconds=outcome.seconds, stats=outcome.stats.to_json(),
        device=device_facts(info))
    return report, device


def outputs_report_text(report: OutputsReport) -> str:
    """The generator report as plain text."""
    lines = _outcome_lines("on-device run", "inputs", report.board, report.link, report.inputs, report.answered,
                           len(report.failed), report.not_sent, report.aborted)
    lines += [
        f"  vs host TFLM     {len(report.mismatches):>8,}   outputs with any byte different "
        f"({report.differing_elements:,} of {report.answered * report.output_size:,} bytes)",
        f"  cycles/inference {report.cycles_mean:>10,.0f} mean ({report.us_per_inference / 1000:.2f} ms at "
        f"{report.cycles_per_second / 1e6:g} MHz)",
        f"  throughput       {report.answered / report.stream_seconds if report.stream_seconds else 0:>8.2f} "
        f"outputs/s ({report.stream_seconds:.1f} s streaming"
        + (f", {report.wall_seconds:.1f} s whole run)" if report.wall_seconds else ")"),
    ]
    for key, value in report.extra.items():
        lines.append(f"  {key:<16} {value}")
    for position in report.mismatches[:5]:
        lines.append(f"  MISMATCH input {position}")
    if report.differing_op:
        lines.append(f"  WHICH OP         {report.differing_op}")
    lines += _failed_lines("input", report.failed)
    lines.append("  PASS: every output equals host TFLM's, byte for byte" if report.passed else "  FAIL")
    return "\n".join(lines)
