"""Spec stage: the shipped spec loads; every malformed spec is refused with file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import spec_dict, write_spec
from zephyr_tinyml.errors import SpecError
from zephyr_tinyml.spec import build_keras_model, check_layers, load_spec, resolve_spec_path


def test_shipped_mnist_spec_is_the_reference_network():
    spec = load_spec(resolve_spec_path("mnist"))
    assert spec.name == "mnist" and spec.input_shape == (28, 28, 1) and len(spec.labels) == 10
    model = build_keras_model(spec)
    assert model.count_params() == 10_930          # the reference design's count
    assert model.count_params() * 4 == 43_720      # 42.7 KiB as float32
    assert spec.budgets["qemu_cortex_m3"].flash == 81920


def test_resolve_unknown_model_lists_known(tmp_path: Path):
    with pytest.raises(SpecError, match=r"no model named 'nope'.*known: .*mnist"):
        resolve_spec_path("nope")


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        check_layers(load_spec(path))
    return str(info.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path):
    message = _error(tmp_path, "name: mnist\ndataset:\n  name: [mnist\n")
    assert "bad.yaml:" in message and "not valid YAML" in message


def test_unknown_key_names_line_and_allowed(tmp_path: Path):
    data = spec_dict()
    data["training"]["epoch"] = 3
    text = yaml.safe_dump(data, sort_keys=False)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.strip().startswith("epoch:"))
    message = _error(tmp_path, text)
    assert f"bad.yaml:{line}" in message
    assert "unknown key 'training.epoch'" in message and "Allowed here: epochs" in message


def test_wrong_type_names_key(tmp_path: Path):
    data = spec_dict()
    data["training"]["epochs"] = "ten"
    message = _error(tmp_path, yaml.safe_dump(data))
    assert "'training.epochs' must be an integer, got str" in message


@pytest.mark.parametrize("key, value, says", [
    ("rotation_degrees", 200, "must be in [0, 180]"),
    ("zoom", 1.5, "must be in [0, 1)"),
    ("shift_pixels", -1, "must be 0 or more"),
])
def test_augmentation_out_of_range_names_key(tmp_path: Path, key: str, value, says: str):
    data = spec_dict()
    data["training"]["augmentation"] = {key: value}
    message = _error(tmp_path, yaml.safe_dump(data))
    assert f"training.augmentation.{key}" in message and says in message


def test_missing_required_key(tmp_path: Path):
    data = spec_dict()
    del data["acceptance"]["min_int8_accuracy"]
    assert "missing required key 'acceptance.min_int8_accuracy'" in _error(tmp_path, yaml.safe_dump(data))


def test_unknown_layer_suggests_keras_name(tmp_path: Path):
    data = spec_dict()
    data["model"]["layers"][0]["class_name"] = "Conv2d"
    text = yaml.safe_dump(data, sort_keys=False)
    message = _error(tmp_path, text)
    assert "'model.layers[0].class_name' is 'Conv2d', which is not a Keras layer" in message
    assert "Did you mean Conv2D" in message


def test_bad_layer_argument(tmp_path: Path):
    data = spec_dict()
    data["model"]["layers"][7]["config"]["unitz"] = 3
    assert "'model.layers[7].config' is not valid for Dense" in _error(tmp_path, yaml.safe_dump(data))


def test_wrong_input_shape_for_the_layers(tmp_path: Path):
    data = spec_dict(dataset={"input_shape": [28, 28]})
    message = _error(tmp_path, yaml.safe_dump(data))
    assert "cannot take the input shape dataset.input_shape=[28, 28]" in message


def test_output_count_must_match_labels(tmp_path: Path):
    data = spec_dict(dataset={"labels": ["a", "b"]})
    assert "'dataset.labels' has 2 labels" in _error(tmp_path, yaml.safe_dump(data))


def test_section_hash_ignores_unrelated_sections(tmp_path: Path):
    a = load_spec(write_spec(tmp_path, spec_dict(), "a.yaml"))
    b = load_spec(write_spec(tmp_path, spec_dict(budgets={"qemu_cortex_m3": {"flash": 1, "ram": 1}}), "b.yaml"))
    assert a.section_hash("dataset", "model", "training") == b.section_hash("dataset", "model", "training")
    c = load_spec(write_spec(tmp_path, spec_dict(training={"epochs": 2}), "c.yaml"))
    assert a.section_hash("training") != c.section_hash("training")
