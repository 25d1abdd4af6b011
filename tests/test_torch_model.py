"""PyTorch models: a ``torch.export`` program (.pt2) or the same network exported to ONNX (.onnx)
becomes a full-int8 .tflite and goes through the same verification and codegen as an int8 .tflite
given by the user.

Needs the optional extra (``pip install "zephyr-tinyml[torch]"``); without it these tests skip and say
so. A small CNN is trained here on 30,000 MNIST images for one epoch (about 6 s; 96.5 % here), so
its accuracy bar (95 %) is below what a 3-epoch model on all 60,000 images reaches (98.7 %).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import embedded_test_inputs
from zephyr_tinyml.errors import ModelError
from zephyr_tinyml.model import torch_model
from zephyr_tinyml.model.model_file import is_model_path, model_kind, spec_for_model_file
from zephyr_tinyml.model.pipeline import BuildOptions, build_model
from zephyr_tinyml.model.tflite_model import inspect_model, per_channel_ops
from zephyr_tinyml.model.verify import quantize_input, run_tflm
from zephyr_tinyml.ui import SilentUI

REASON = 'the PyTorch extra is not installed (pip install "zephyr-tinyml[torch]")'


@pytest.fixture(scope="module")
def torch():
    """torch, after checking that the whole extra (torchao, litert-torch) is importable."""
    module = pytest.importorskip("torch", reason=REASON)
    pytest.importorskip("torchao", reason=REASON)
    pytest.importorskip("litert_torch", reason=REASON)
    return module


@pytest.fixture(scope="module")
def digits_cnn(torch, mnist):
    """A small CNN (NCHW, as PyTorch models are) trained for one epoch, in evaluation mode."""
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    x = torch.from_numpy(mnist.x_train[:30000].astype(np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(mnist.y_train[:30000].astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), 5e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # small batches: one thread is faster than two that contend (about 6 s)
    try:
        for i in range(0, len(x), 128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128]).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def digits_pt2(torch, digits_cnn, tmp_path_factory) -> Path:
    """The CNN saved with torch.export.save."""
    path = tmp_path_factory.mktemp("torch") / "digits.pt2"
    torch.export.save(torch.export.export(digits_cnn, (torch.zeros(1, 1, 28, 28),)), str(path))
    return path


@pytest.fixture(scope="module")
def digits_onnx(torch, digits_cnn, tmp_path_factory) -> Path:
    """The same CNN exported to ONNX by torch's TorchScript-based exporter, with a dynamic batch
    (so its Flatten arrives as the Shape/Gather/Concat/Reshape chain many exported models have)."""
    pytest.importorskip("onnx", reason=REASON)
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    torch.onnx.export(digits_cnn, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return path


def _outputs(text: str) -> list[list[int]]:
    """Each ``{ // test n ...}`` block of kTestOutputs in a generated test_data.cc."""
    body = text[text.index("kTestOutputs"):]
    body = body[:body.index("};")]
    return [[int(v) for v in block.replace("\n", " ").split(",") if v.strip()]
            for block in re.findall(r"// test \d+[^\n]*\n([^}]*)\}", body)]


def test_pt2_is_a_model_file_without_torch_installed():
    """Recognising the format needs no torch: only converting it does."""
    assert is_model_path("digits.pt2") and model_kind(Path("digits.pt2")) == "torch"
    assert is_model_path("digits.onnx") and model_kind(Path("digits.onnx")) == "torch"


def test_missing_extra_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "digits.pt2"
    path.write_bytes(b"")
    monkeypatch.setattr(torch_model, "torch_extra_missing", lambda: "litert_torch")
    with pytest.raises(ModelError, match=re.escape('pip install "zephyr-tinyml[torch]"')):
        torch_model.load_torch_model(path)


def test_pt2_is_converted_to_full_int8_and_verified(digits_pt2: Path, tmp_path: Path, mnist_dir: Path):
    spec = spec_for_model_file(digits_pt2, data_dir=mnist_dir, output_dir=tmp_path / "gen",
                               work_dir=tmp_path / "work", representative_samples=200)
    result = build_model(spec, BuildOptions(work_dir=tmp_path / "work", data_dir=mnist_dir, allow_download=False),
                         SilentUI())
    v = result.verification
    assert result.model_source == "file" and v.images == 10_000
    assert v.float_accuracy is not None and v.float_accuracy >= 95.0     # the PyTorch model's own accuracy
    assert v.tflm_accuracy is not None and v.tflm_accuracy >= 95.0
    assert abs(v.float_accuracy - v.tflm_accuracy) < 1.0
    assert v.ref_unexplained_mismatches == 0
    tflite = (tmp_path / "work" / "digits.tflite").read_bytes()
    info = inspect_model(tflite)
    assert info.input.shape == (1, 28, 28, 1) and info.input.dtype == "int8"    # NHWC, like the data
    assert info.output.shape == (1, 10) and info.output.dtype == "int8"
    assert not per_channel_ops(tflite) and "FULLY_CONNECTED" in info.ops
    assert not torch_model.float_ops(tflite)
    # The device checks itself against host TFLM's outputs, byte for byte (it gets the test digits'
    # pixels and quantizes them itself, as the pipeline's quantize_input does).
    data_cc = (tmp_path / "gen" / "test_data.cc").read_text()
    assert "#define TINYML_TEST_PIXELS 1" in (tmp_path / "gen" / "test_data.h").read_text()
    pixels = np.array([np.frombuffer(x, np.uint8) for x in embedded_test_inputs(data_cc)]).reshape(-1, 28, 28, 1)
    expected = run_tflm(tflite, quantize_input(pixels, result.spec, info)).reshape(len(pixels), -1)
    assert len(pixels) == 10 and np.array_equal(np.array(_outputs(data_cc)), expected)


def test_op_left_in_float_is_refused_by_name(torch, tmp_path: Path, mnist_dir: Path):
    """An op the int8 quantizer does not cover would stay float between DEQUANTIZE and QUANTIZE."""
    nn = torch.nn

    class Sine(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3, stride=2), nn.Linear(4 * 13 * 13, 10)

        def forward(self, x):
            return self.fc(torch.flatten(torch.sin(self.conv(x)), 1))

    path = tmp_path / "sine.pt2"
    torch.export.save(torch.export.export(Sine().eval(), (torch.zeros(1, 1, 28, 28),)), str(path))
    spec = spec_for_model_file(path, data_dir=mnist_dir, output_dir=tmp_path / "gen", work_dir=tmp_path / "work",
                               representative_samples=20)
    with pytest.raises(ModelError, match=r"int8 end to end: SIN stays float"):
        build_model(spec, BuildOptions(work_dir=tmp_path / "work", data_dir=mnist_dir, allow_download=False),
                    SilentUI())


def test_onnx_is_converted_like_the_same_pytorch_network(digits_onnx: Path, digits_pt2: Path, tmp_path: Path,
                                                         mnist_dir: Path):
    """The ONNX file runs as a PyTorch module: its float outputs equal the program's, and it reaches
    the device the same way (int8 NHWC, verified, generated outputs = host TFLM)."""
    onnx_model, program = torch_model.load_torch_model(digits_onnx), torch_model.load_torch_model(digits_pt2)
    assert onnx_model.input_shape == program.input_shape == (None, 28, 28, 1)
    assert onnx_model.count_params() == program.count_params()
    x = np.random.default_rng(0).random((64, 28, 28, 1), np.float32)
    assert np.allclose(onnx_model.predict(x), program.predict(x), atol=1e-4)
    spec = spec_for_model_file(digits_onnx, data_dir=mnist_dir, output_dir=tmp_path / "gen",
                               work_dir=tmp_path / "work", representative_samples=200)
    result = build_model(spec, BuildOptions(work_dir=tmp_path / "work", data_dir=mnist_dir, allow_download=False),
                         SilentUI())
    v = result.verification
    assert v.images == 10_000 and v.float_accuracy is not None and v.float_accuracy >= 95.0
    assert v.tflm_accuracy is not None and abs(v.float_accuracy - v.tflm_accuracy) < 1.0
    assert v.ref_unexplained_mismatches == 0
    tflite = (tmp_path / "work" / "digits.tflite").read_bytes()
    info = inspect_model(tflite)
    assert info.input.shape == (1, 28, 28, 1) and info.input.dtype == "int8" and not torch_model.float_ops(tflite)
    data_cc = (tmp_path / "gen" / "test_data.cc").read_text()
    pixels = np.array([np.frombuffer(x, np.uint8) for x in embedded_test_inputs(data_cc)]).reshape(-1, 28, 28, 1)
    expected = run_tflm(tflite, quantize_input(pixels, result.spec, info)).reshape(len(pixels), -1)
    assert np.array_equal(np.array(_outputs(data_cc)), expected)


def test_onnx_op_we_do_not_convert_is_refused_by_name(torch, tmp_path: Path):
    pytest.importorskip("onnx", reason=REASON)

    class Erf(torch.nn.Module):
        def forward(self, x):
            return torch.flatten(torch.erf(x), 1)

    path = tmp_path / "erf.onnx"
    torch.onnx.export(Erf().eval(), (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False)
    with pytest.raises(ModelError, match=r"is ONNX op Erf, which zephyr-tinyml does not convert"):
        torch_model.load_torch_model(path)
