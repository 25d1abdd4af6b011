"""Shared fixtures: the real MNIST files, small real specs, and one real short pipeline run.

No mocks: models are trained with Keras, converted with the TFLite converter and run under the
real TFLM interpreter.  Tiers that cannot run say why in the skip reason.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The Zephyr tier's firmware builds live in build/tests/<name> (the same depth each) and Zephyr
# compiles through ccache when it is installed: with the paths inside the clone made relative, the
# build folder left out of the hash (-g would put it in) and the app's -fmacro-prefix-map ignored
# (it names the app on every compiler line, but changes no object outside the app), TFLM and
# Zephyr's own files compiled for one app are reused by the next app for the same board and by the
# next run, in any clone. Test images only: their debug info names one folder for all of them.
TEST_BUILDS = ROOT / "build" / "tests"
os.environ.setdefault("CCACHE_BASEDIR", str(ROOT))
os.environ.setdefault("CCACHE_NOHASHDIR", "1")
os.environ.setdefault("CCACHE_IGNOREOPTIONS", "-fmacro-prefix-map=*")

SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The official MNIST IDX files: $TINYML_DATA_DIR, else ../shared/datasets/mnist."""
    candidate = Path(os.environ.get("TINYML_DATA_DIR", SHARED_MNIST))
    if not (candidate / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST IDX files not found in {candidate}; set TINYML_DATA_DIR to a folder holding them")
    return candidate


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    """The MNIST data set as the data stage loads it."""
    from zephyr_tinyml.model.data import load_dataset

    return load_dataset("mnist", (28, 28, 1), mnist_dir, allow_download=False)


def spec_dict(**overrides) -> dict:
    """The shipped MNIST spec as a dict, with top-level sections replaced/merged by ``overrides``."""
    data = yaml.safe_load((ROOT / "models" / "mnist.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def write_spec(folder: Path, data: dict, name: str = "spec.yaml") -> Path:
    """Write ``data`` as a spec file; generated sources go to ``folder/generated``."""
    data = dict(data)
    data["codegen"] = {**data.get("codegen", {}), "output_dir": "generated"}
    data["codegen"].pop("app", None)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# A short but real training: 3 epochs of the reference network reach about 98.5 % int8.
SHORT_TRAINING = {"epochs": 3, "warmup_epochs": 0, "augmentation": {"shift_pixels": 0}}


@pytest.fixture(scope="session")
def short_build(tmp_path_factory, mnist_dir: Path):
    """One real pipeline run of the reference network with a short training."""
    from zephyr_tinyml.model.pipeline import BuildOptions, build_model
    from zephyr_tinyml.model.spec import load_spec
    from zephyr_tinyml.ui import SilentUI

    folder = tmp_path_factory.mktemp("short")
    spec = load_spec(write_spec(folder, spec_dict(
        training=SHORT_TRAINING, acceptance={"min_int8_accuracy": 97.0, "max_accuracy_drop": 1.0})))
    options = BuildOptions(work_dir=folder / "work", data_dir=mnist_dir, allow_download=False)
    return build_model(spec, options, SilentUI()), options


_TIER_OUTCOMES: dict[str, list[str]] = {"host": [], "zephyr": []}
_TIER_SECONDS: dict[str, float] = {"host": 0.0, "zephyr": 0.0}


def pytest_runtest_logreport(report) -> None:
    """Remember each test's outcome and time (set-up, call, tear-down) by tier (``@pytest.mark.zephyr`` or host).

    A module fixture's build is timed in the set-up of the first test that uses it, so the sums are
    each tier's share of the wall time: CI's budget is kept per tier.
    """
    tier = "zephyr" if "zephyr" in report.keywords else "host"
    _TIER_SECONDS[tier] += report.duration
    if report.when == "call" or report.skipped:
        _TIER_OUTCOMES[tier].append(report.outcome)


def pytest_terminal_summary(terminalreporter) -> None:
    """One line per tier: ran, or skipped and why (CI logs must say which tiers ran)."""
    for tier, outcomes in _TIER_OUTCOMES.items():
        ran = sum(1 for o in outcomes if o != "skipped")
        skipped = len(outcomes) - ran
        if tier == "zephyr" and ran == 0:
            from zephyr_tinyml.firmware.zephyr_env import find_zephyr

            found, why = find_zephyr(ROOT)
            if found is not None and not skipped:
                terminalreporter.write_line(f"tier zephyr: no tests selected ({why})")
            else:
                terminalreporter.write_line(f"tier zephyr: SKIPPED ({skipped} tests) - {why}")
        else:
            terminalreporter.write_line(f"tier {tier}: ran {ran} tests" + (f", {skipped} skipped" if skipped else "")
                                        + f" in {_TIER_SECONDS[tier]:.0f} s")


def embedded_test_packed(data_cc: str) -> list[bytes]:
    """The test inputs a generated test_data.cc embeds, each still packed (kTestPacked, kTestPackedStart)."""
    import re

    body = data_cc[data_cc.index("kTestPacked[] = {"):]
    body = body[body.index("{") + 1:body.index("};")]
    packed = bytes(int(x) for line in body.splitlines() if not line.strip().startswith("//")
                   for x in line.split(",") if x.strip())
    starts = [int(x) for x in re.search(r"kTestPackedStart\[kNumTests \+ 1\] = \{([^}]*)\}", data_cc).group(1).split(",")]
    assert starts[-1] == len(packed)
    return [packed[a:b] for a, b in zip(starts, starts[1:])]


def embedded_test_inputs(data_cc: str) -> list[bytes]:
    """The test inputs a generated test_data.cc embeds, unpacked as the device unpacks them."""
    from zephyr_tinyml import packbits

    return [packbits.unpack(chunk) for chunk in embedded_test_packed(data_cc)]
