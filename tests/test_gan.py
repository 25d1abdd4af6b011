"""GAN specs (models/dcgan.yaml): spec checks, and one real short adversarial training through every stage.

The short run trains the shipped DCGAN layers for two epochs on 2,048 real MNIST training images, so
its digits are blobs: the test asserts the machinery (bit-exact int8 generator, classifier figures,
generated sources, caching), not image quality; the shipped spec's figures are in the README.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, embedded_test_inputs
from zephyr_tinyml.errors import AcceptanceError, SpecError
from zephyr_tinyml.model.pipeline import BuildOptions, build_model
from zephyr_tinyml.model.keras_stack import check_layers
from zephyr_tinyml.model.spec import load_spec
from zephyr_tinyml.ui import SilentUI

DCGAN = ROOT / "models" / "dcgan.yaml"


def gan_dict(**overrides) -> dict:
    data = yaml.safe_load(DCGAN.read_text())
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return data


def write(folder: Path, data: dict, name: str = "gan.yaml") -> Path:
    data = dict(data)
    data["codegen"] = {**data.get("codegen", {}), "output_dir": "generated"}
    data["codegen"].pop("app", None)
    (folder / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / name


def test_shipped_dcgan_spec_is_a_gan() -> None:
    spec = load_spec(DCGAN)
    assert spec.model.gan is not None and spec.model.gan.latent_dim == 32 and not spec.model.layers
    check_layers(spec)  # generator makes 28x28x1, discriminator ends in one logit


@pytest.mark.parametrize("change, message", [
    (lambda d: d["model"].pop("discriminator"), "needs 'model.discriminator'"),
    (lambda d: d.pop("quality"), "needs a 'quality' section"),
    (lambda d: d["acceptance"].pop("min_class_evenness"), "acceptance.min_class_evenness"),
    (lambda d: d["acceptance"].update(min_class_evenness=1.5), "must be in [0, 1]"),
    (lambda d: d["model"].update(layers=[{"class_name": "Dense"}]), "exactly one of 'layers'"),
])
def test_gan_spec_faults_are_named(tmp_path: Path, change, message: str) -> None:
    data = gan_dict()
    change(data)
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(write(tmp_path, data))


@pytest.mark.parametrize("overrides, message", [
    ({"quality": {"classifier": "mnist"}}, "no 'model.generator'"),
    ({"training": {"sample_every": 2}}, "'training.sample_every' is for a GAN"),
    ({"acceptance": {"min_class_evenness": 0.9}}, "'acceptance.min_class_evenness' is for a GAN"),
])
def test_gan_keys_belong_to_a_gan(tmp_path: Path, overrides: dict, message: str) -> None:
    from conftest import spec_dict, write_spec

    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(write_spec(tmp_path, spec_dict(**overrides)))


def test_generator_must_draw_the_data_sets_images(tmp_path: Path) -> None:
    data = gan_dict()
    data["model"]["generator"][-1]["config"]["strides"] = 1  # 14x14 images, not 28x28
    with pytest.raises(SpecError, match=r"makes images of shape \[14, 14, 1\]"):
        check_layers(load_spec(write(tmp_path, data)))


@pytest.fixture(scope="module")
def gan_build(tmp_path_factory, short_build, mnist, mnist_dir):
    """Two epochs on 2,048 MNIST training images, judged by the short MNIST build's classifier."""
    folder = tmp_path_factory.mktemp("gan")
    np.savez(folder / "digits.npz", x_train=mnist.x_train[:2048], y_train=mnist.y_train[:2048],
             x_test=mnist.x_test[:256], y_test=mnist.y_test[:256])
    classifier = short_build[0].spec.path
    data = gan_dict(dataset={"name": None, "path": "digits.npz"}, training={"epochs": 2, "sample_every": 1},
                    quality={"classifier": str(classifier), "samples": 300},
                    acceptance={"min_confident_percent": 0, "min_class_evenness": 0})
    del data["dataset"]["name"]
    spec = load_spec(write(folder, data))
    work = folder / "builds" / "dcgan"
    (folder / "builds").mkdir()
    (folder / "builds" / "mnist").symlink_to(short_build[1].work_dir)  # where the classifier's cache is
    options = BuildOptions(work_dir=work, data_dir=mnist_dir, allow_download=False)  # the classifier's data
    return build_model(spec, options, SilentUI()), options


def test_int8_generator_is_bit_exact_with_the_reference_kernels(gan_build) -> None:
    result, _ = gan_build
    v = result.verification
    assert v.images == 1000 and v.ref_mismatches == 0
    assert result.info.input.shape == (1, 32) and result.info.output.shape == (1, 28, 28, 1)
    assert set(result.info.unique_ops) <= {"RESHAPE", "TRANSPOSE_CONV", "TANH"}


def test_classifier_judges_float_and_int8_digits(gan_build) -> None:
    result, _ = gan_build
    assert set(result.quality) == {"float", "int8"}
    for judgement in result.quality.values():
        assert sum(judgement["histogram"]) == judgement["images"] == 300
        assert 0.0 <= judgement["evenness"] <= 1.0 and 0.0 <= judgement["confident_percent"] <= 100.0
        assert sum(judgement["confident_histogram"]) == round(judgement["confident_percent"] * 3)
    report = json.loads((result.work_dir / "report.json").read_text())
    assert report["quality"]["int8"]["confidence"] == 0.9


def test_embedded_latent_vectors_give_host_tflm_images(gan_build) -> None:
    from zephyr_tinyml.model.verify import run_tflm

    result, _ = gan_build
    folder = result.generated.folder
    inputs = embedded_test_inputs((folder / "test_data.cc").read_text())
    assert len(inputs) == 10 and all(len(x) == 32 for x in inputs)
    facts = json.loads((folder / "tinyml_model.json").read_text())
    assert facts["classifier"] is False and facts["output"]["shape"] == [1, 28, 28, 1]
    tflite = result.tflite_path.read_bytes()
    images = run_tflm(tflite, np.frombuffer(b"".join(inputs), np.int8).reshape(10, 32))
    assert images.shape == (10, 28, 28, 1) and len(np.unique(images)) > 10  # pictures, not a constant


def test_pictures_are_written(gan_build) -> None:
    from PIL import Image

    result, _ = gan_build
    work = result.work_dir
    assert (work / "samples" / "epoch-001.png").is_file() and (work / "samples" / "epoch-002.png").is_file()
    grid = Image.open(work / "int8_digits.png")
    assert grid.size[0] > 8 * 56 and grid.mode == "L"
    assert (work / "training.png").is_file() and (work / "dcgan_generator.keras").is_file()


def test_rerun_is_cached_and_byte_identical(gan_build) -> None:
    result, options = gan_build
    before = {p.name: p.read_bytes() for p in result.generated.folder.iterdir()}
    again = build_model(result.spec, options, SilentUI())
    assert all(again.timings[s].cached for s in ("train", "quantize", "verify", "quality"))
    assert {p.name: p.read_bytes() for p in again.generated.folder.iterdir()} == before
    assert again.generated.changed == ()


def test_missed_bar_names_it_and_generates_nothing(gan_build, tmp_path: Path) -> None:
    from dataclasses import replace

    result, options = gan_build
    strict = replace(result.spec, acceptance=replace(result.spec.acceptance, min_confident_percent=100.0),
                     codegen=replace(result.spec.codegen, output_dir=tmp_path / "generated"))
    with pytest.raises(AcceptanceError, match=r"below acceptance.min_confident_percent 100 %") as caught:
        build_model(strict, options, SilentUI())
    assert "Float generator:" in str(caught.value)
    assert not (tmp_path / "generated").exists()
