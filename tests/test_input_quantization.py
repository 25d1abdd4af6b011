"""The generated QuantizeInput()/QuantizeImage(), compiled with the host C++ compiler, give exactly
the bytes of the host pipeline's quantization for every pixel value, for specs with and without an
offset and with three channels (the header once stated a formula that dropped the offset).

Needs a host C++ compiler (g++ or $CXX); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, spec_dict, write_spec
from zephyr_tinyml.model.arena import arena_facts, arena_h
from zephyr_tinyml.model.codegen import _model_data_h, _settings_h, input_quantization_table
from zephyr_tinyml.model.spec import load_spec
from zephyr_tinyml.model.tflite_model import ModelInfo, TensorInfo
from zephyr_tinyml.model.verify import quantize_input

DRIVER = r"""
#include <cstdio>
#include "model_settings.h"
int main() {
  for (int p = 0; p < 256; p++) std::printf("%d\n", tinyml::QuantizeInput((uint8_t)p));
  static uint8_t pixels[tinyml::kInputSize];
  static int8_t input[tinyml::kInputSize];
  for (int i = 0; i < tinyml::kInputSize; i++) pixels[i] = (uint8_t)((i * 37 + 11) & 0xff);
  tinyml::QuantizeImage(pixels, input);
  for (int i = 0; i < tinyml::kInputSize; i++) std::printf("%d\n", input[i]);
  return 0;
}
"""

# (normalization scale, offset, channels, input scale, input zero point): the converter's input
# quantization for [0, 1] is 1/255 with zero point -128; for [-1, 1] it is 2/255 with zero point 0.
CASES = {
    "offset-0": (1 / 255, 0.0, 1, 0.003921568859368563, -128),
    "offset-minus-1": (0.0078431372549, -1.0, 1, 0.007843137718737125, 0),
    "rgb-offset-minus-1": (0.0078431372549, -1.0, 3, 0.007843137718737125, -1),
    "odd-scale": (0.0123, -0.77, 3, 0.0113, 7),
}


@pytest.fixture(scope="module")
def compiler() -> str:
    found = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not found:
        pytest.skip("no host C++ compiler (g++ or $CXX) to compile the generated header")
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_quantizer_equals_host_quantization(case: str, compiler: str, tmp_path: Path):
    scale, offset, channels, in_scale, in_zero = CASES[case]
    spec = load_spec(write_spec(tmp_path, spec_dict(dataset={
        "input_shape": [8, 8, channels], "normalization": {"scale": scale, "offset": offset}})))
    info = ModelInfo(ops=("CONV_2D",), input=TensorInfo((1, 8, 8, channels), "int8", in_scale, in_zero),
                     output=TensorInfo((1, 10), "int8", 0.1, 0), labels=(), size=1000)
    (tmp_path / "model_data.h").write_text(_model_data_h("g_test_model_data", "// test\n"))
    (tmp_path / "model_settings.h").write_text(
        _settings_h(spec, "// test\n", info, tuple("0123456789"), input_quantization_table(spec, info),
                    "g_test_model_data"))
    (tmp_path / "model_arena.h").write_text(arena_h("// test\n", arena_facts(1000, 5, 16, {})))
    (tmp_path / "driver.cpp").write_text(DRIVER)
    binary = tmp_path / "driver"
    subprocess.run([compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{tmp_path}", f"-I{ROOT / 'zephyr' / 'include'}",
                    str(tmp_path / "driver.cpp"), "-o", str(binary)], check=True, capture_output=True, text=True)
    printed = [int(line) for line in subprocess.run([str(binary)], check=True, capture_output=True,
                                                    text=True).stdout.split()]
    every_pixel = quantize_input(np.arange(256, dtype=np.uint8), spec, info).reshape(-1)
    assert printed[:256] == every_pixel.tolist()
    pixels = ((np.arange(64 * channels) * 37 + 11) & 0xFF).astype(np.uint8).reshape(1, 8, 8, channels)
    assert printed[256:] == quantize_input(pixels, spec, info).reshape(-1).tolist()
    header = (tmp_path / "model_settings.h").read_text()
    assert f"kInputNormOffset = {float(offset)!r}f;" in header
    assert "real = pixel * kInputNormScale + kInputNormOffset" in header
