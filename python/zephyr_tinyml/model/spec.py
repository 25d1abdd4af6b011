"""Model spec: load a YAML file, validate every key, and hand the pipeline typed values.

Why strict: a typo such as ``epoch:`` silently ignored would train the wrong model for ten minutes.
Every error names the file, the key path and the line, and says what is allowed.  Layers are given in
Keras' own ``class_name`` + ``config`` form, so a spec accepts any Keras layer; they are checked
against Keras in :func:`check_layers` (separate because importing Keras takes seconds and
``tinyml list`` should not pay for it).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from ..errors import SpecError
from ..fileio import content_hash

if TYPE_CHECKING:   # for the annotation only: loading a spec does not import numpy and the data stage
    from .data import DataSource

SPEC_SUFFIXES = (".yaml", ".yml")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
BOARD_RE = re.compile(r"^[A-Za-z0-9_@/.-]+$")


# --------------------------------------------------------------------------------------------
# Typed view of a spec
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerSpec:
    """One Keras layer as ``keras.layers.deserialize`` takes it."""

    class_name: str
    config: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Budget:
    """Region budgets in bytes for one board."""

    flash: int
    ram: int


@dataclass(frozen=True)
class GanSpec:
    """A generative adversarial network: what ``model.generator`` / ``model.discriminator`` and
    ``quality`` say.  Only the generator is quantized and deployed; the discriminator exists to train it."""

    latent_dim: int
    generator: tuple[LayerSpec, ...]
    discriminator: tuple[LayerSpec, ...]
    sample_every: int                 # epochs between training sample grids
    classifier: str                   # spec (name or path) of the classifier that judges the digits
    quality_samples: int              # generated images the classifier labels
    confidence: float                 # softmax probability that counts as "confidently classified"
    min_confident_percent: float      # acceptance: share of confidently classified images, int8 generator
    min_class_evenness: float         # acceptance: normalized entropy of the class histogram (1 = even)


@dataclass(frozen=True)
class Spec:
    """A validated model spec.  ``raw`` keeps the parsed YAML for hashing."""

    path: Path
    name: str
    description: str
    dataset: str                      # built-in name, or the data path as written (for display)
    input_shape: tuple[int, ...]
    norm_scale: float
    norm_offset: float
    labels: tuple[str, ...]
    layers: tuple[LayerSpec, ...]
    epochs: int
    batch_size: int
    seed: int
    optimizer: dict[str, Any]
    loss: dict[str, Any]
    lr_schedule: dict[str, Any] | None
    warmup_epochs: int
    shift_pixels: int
    rotation_degrees: float
    zoom: float
    validation_split: float
    representative_samples: int
    min_int8_accuracy: float
    max_accuracy_drop: float
    test_images: int
    arena_margin_percent: float
    arena_alignment: int
    output_dir: Path
    app_dir: Path | None
    budgets: dict[str, Budget]
    raw: dict[str, Any] = field(repr=False, compare=False)
    dataset_path: Path | None = None  # image folder or .npz (dataset.path), resolved
    test_split: float = 0.2
    dataset_line: int = 0
    model_file: Path | None = None    # model.file: a model trained elsewhere (no training stage)
    has_data: bool = True             # False: a model file given without any data
    gan: GanSpec | None = None        # model.generator: a GAN whose generator is deployed

    def data_source(self) -> DataSource:
        """What the data stage loads (built-in name or path), with this spec's place for messages."""
        from .data import DataSource

        where = f"{self.path}:{self.dataset_line}" if self.dataset_line else str(self.path)
        return DataSource(name=None if self.dataset_path else self.dataset, path=self.dataset_path,
                          test_split=self.test_split, seed=self.seed, labels=self.labels, origin=where)

    def section_hash(self, *sections: str) -> str:
        """Stable hash of the named top-level sections, for cache keys.

        Only the sections a stage depends on go in, so editing a budget does not retrain.
        """
        payload = {name: self.raw.get(name) for name in sections}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def model_hash(self) -> str:
        """Hash of what the int8 model is made from (data set, network, training, quantization):
        budgets, acceptance bars and codegen settings may change without making another model."""
        return self.section_hash("dataset", "model", "training", "quantization")

    def file_hash(self) -> str:
        """SHA-256 of the spec file as written (stamped into generated sources)."""
        if self.path.is_dir():  # a SavedModel given on the command line
            return content_hash(self.path)
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# A small declarative schema: enough to say precisely what is wrong, where, and what is allowed.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """Schema of one mapping key."""

    kind: str  # "str" "int" "float" "bool" "map" "list" "any-map" "budgets"
    required: bool = False
    children: dict[str, "Key"] | None = None
    items: "Key | None" = None
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _degrees(value: Any) -> str | None:
    return None if 0 <= value <= 180 else "must be in [0, 180]"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _percent(value: Any) -> str | None:
    return None if 0 <= value <= 100 else "must be a percentage in [0, 100]"


def _power_of_two(value: Any) -> str | None:
    return None if value > 0 and value & (value - 1) == 0 else "must be a power of two"


def _name(value: Any) -> str | None:
    return None if NAME_RE.match(value) else "must be lower case letters, digits and '_', starting with a letter"


def _open_fraction(value: Any) -> str | None:
    return None if 0 < value < 1 else "must be in (0, 1)"


def _unit(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be in [0, 1]"


def _int8(value: Any) -> str | None:
    return None if value == "int8" else "only 'int8' is supported (full-integer quantization)"


KERAS_OBJECT = {
    "class_name": Key("str", required=True),
    "config": Key("any-map"),
}

SCHEMA: dict[str, Key] = {
    "name": Key("str", required=True, check=_name),
    "description": Key("str"),
    "dataset": Key("map", children={
        "name": Key("str", doc="a Keras built-in set: mnist, fashion_mnist, cifar10, cifar100"),
        "path": Key("str", doc="a folder with one subfolder per class, or an .npz"),
        "test_split": Key("float", check=_open_fraction, doc="share of a class folder kept for testing"),
        "input_shape": Key("list", items=Key("int", check=_positive)),
        "normalization": Key("map", children={
            "scale": Key("float", required=True),
            "offset": Key("float"),
        }),
        "labels": Key("list", items=Key("str")),
    }),
    "model": Key("map", required=True, children={
        "layers": Key("list", items=Key("map", children=KERAS_OBJECT)),
        "file": Key("str", doc="a model trained elsewhere: .tflite, .keras, .h5 or a SavedModel folder"),
        "latent_dim": Key("int", check=_positive, doc="a GAN generator's input size"),
        "generator": Key("list", items=Key("map", children=KERAS_OBJECT)),
        "discriminator": Key("list", items=Key("map", children=KERAS_OBJECT)),
    }),
    "training": Key("map", children={
        "epochs": Key("int", required=True, check=_positive),
        "batch_size": Key("int", required=True, check=_positive),
        "seed": Key("int", required=True, check=_non_negative),
        "optimizer": Key("map", required=True, children=KERAS_OBJECT),
        "loss": Key("map", required=True, children=KERAS_OBJECT),
        "learning_rate_schedule": Key("map", children=KERAS_OBJECT),
        "warmup_epochs": Key("int", check=_non_negative),
        "augmentation": Key("map", children={
            "shift_pixels": Key("int", check=_non_negative),
            "rotation_degrees": Key("float", check=_degrees, doc="degrees"),
            "zoom": Key("float", check=_fraction, doc="fraction"),
        }),
        "validation_split": Key("float", check=_fraction),
        "sample_every": Key("int", check=_positive, doc="epochs between a GAN's sample grids"),
    }),
    "quantization": Key("map", children={
        "representative_samples": Key("int", required=True, check=_positive),
        "input_type": Key("str", check=_int8),
        "output_type": Key("str", check=_int8),
    }),
    "acceptance": Key("map", children={
        "min_int8_accuracy": Key("float", check=_percent, doc="percent"),
        "max_accuracy_drop": Key("float", check=_percent, doc="percentage points"),
        "min_confident_percent": Key("float", check=_percent, doc="a GAN: percent of generated images "
                                                                  "the classifier is confident about"),
        "min_class_evenness": Key("float", check=_unit, doc="a GAN: normalized entropy of the classes drawn"),
    }),
    "quality": Key("map", children={
        "classifier": Key("str", required=True, doc="the spec (name or .yaml) of the classifier that judges "
                                                    "a GAN's images"),
        "samples": Key("int", check=_positive),
        "confidence": Key("float", check=_open_fraction),
    }),
    "codegen": Key("map", children={
        "test_images": Key("int", check=_positive),
        "arena_margin_percent": Key("float", check=_percent),
        "arena_alignment": Key("int", check=_power_of_two),
        "output_dir": Key("str"),
        "app": Key("str"),
    }),
    "budgets": Key("budgets"),
}

BUDGET_KEYS = {"flash": Key("int", required=True, check=_positive),
               "ram": Key("int", required=True, check=_positive)}

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "map": (dict,), "any-map": (dict,), "budgets": (dict,), "list": (list,),
}
_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "map": "a mapping", "any-map": "a mapping", "budgets": "a mapping of board: {flash, ram}",
               "list": "a list"}


class _Located:
    """Parsed YAML plus the line of every key path, so errors can point at the line."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines: dict[str, int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc)
            raise SpecError(f"{where}: not valid YAML: {problem}. Fix the syntax (indentation, "
                            f"':' after keys, quotes) and run again.") from None
        if node is None:
            raise SpecError(f"{path}: the spec is empty; see models/mnist.yaml for a complete one.")
        self._index(node, "")
        self.data = yaml.safe_load(text)

    def _index(self, node: yaml.Node, prefix: str) -> None:
        self.lines[prefix] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
                self.lines[key] = key_node.start_mark.line + 1
                self._index(value_node, key)
                self.lines[key] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._index(item, f"{prefix}[{i}]")

    def where(self, key: str) -> str:
        """``file:line`` of ``key`` (or of its nearest located parent)."""
        probe = key
        while probe and probe not in self.lines:
            probe = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", probe)
        line = self.lines.get(probe)
        return f"{self.path}:{line}" if line else str(self.path)


def _validate(doc: _Located, value: Any, schema: Key, key: str) -> None:
    """Check ``value`` against ``schema``; raise :class:`SpecError` naming ``key`` on the first fault."""
    allowed = _TYPES[schema.kind]
    if isinstance(value, bool) and schema.kind != "bool" or not isinstance(value, allowed):
        got = "nothing" if value is None else type(value).__name__
        raise SpecError(f"{doc.where(key)}: '{key}' must be {_TYPE_WORDS[schema.kind]}, got {got} "
                        f"({value!r}).")
    if schema.check is not None:
        problem = schema.check(value)
        if problem:
            raise SpecError(f"{doc.where(key)}: '{key}' {problem}; got {value!r}.")
    if schema.kind == "map" and schema.children is not None:
        _validate_map(doc, value, schema.children, key)
    elif schema.kind == "budgets":
        for board, budget in value.items():
            board_key = f"{key}.{board}"
            if not isinstance(board, str) or not BOARD_RE.match(board):
                raise SpecError(f"{doc.where(board_key)}: '{board_key}' is not a Zephyr board name.")
            _validate(doc, budget, Key("map", children=BUDGET_KEYS), board_key)
    elif schema.kind == "list" and schema.items is not None:
        if not value:
            raise SpecError(f"{doc.where(key)}: '{key}' must not be empty.")
        for i, item in enumerate(value):
            _validate(doc, item, schema.items, f"{key}[{i}]")


def _validate_map(doc: _Located, value: dict, children: dict[str, Key], key: str) -> None:
    for name in value:
        if name not in children:
            path = f"{key}.{name}" if key else str(name)
            raise SpecError(f"{doc.where(path)}: unknown key '{path}'. Allowed here: "
                            f"{', '.join(children)}.")
    for name, child in children.items():
        path = f"{key}.{name}" if key else name
        if name not in value:
            if child.required:
                raise SpecError(f"{doc.where(key)}: missing required key '{path}' "
                                f"({_TYPE_WORDS[child.kind]}{', ' + child.doc if child.doc else ''}).")
            continue
        _validate(doc, value[name], child, path)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def models_dir() -> Path:
    """The repository's ``models/`` folder (specs shipped with the project)."""
    return Path(__file__).resolve().parents[3] / "models"


def resolve_spec_path(model: str) -> Path:
    """Turn ``mnist`` or ``path/to/spec.yaml`` into a spec file path, or say what exists."""
    candidate = Path(model)
    if candidate.suffix in SPEC_SUFFIXES:
        if candidate.is_file():
            return candidate.resolve()
        raise SpecError(f"spec file '{model}' does not exist.")
    for suffix in SPEC_SUFFIXES:
        path = models_dir() / f"{model}{suffix}"
        if path.is_file():
            return path
    known = ", ".join(p.stem for p in list_specs()) or "none"
    raise SpecError(f"no model named '{model}' in {models_dir()} (known: {known}). "
                    f"Give a model name or a path to a .yaml spec.")


def list_specs() -> list[Path]:
    """Spec files shipped in ``models/``, sorted by name."""
    folder = models_dir()
    return sorted(p for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES) if folder.is_dir() else []


def load_spec(path: Path) -> Spec:
    """Read and validate a spec file; every fault is a :class:`SpecError` with file and line."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec '{path}': {exc.strerror}.") from None
    doc = _Located(path, text)
    if not isinstance(doc.data, dict):
        raise SpecError(f"{path}:1: a spec must be a mapping of keys (name, dataset, model, ...).")
    model = doc.data.get("model")
    if isinstance(model, dict) and "file" in model and "layers" not in model and "training" in doc.data:
        # Before the schema, which would ask for the training keys a model file never uses.
        raise SpecError(f"{doc.where('training')}: 'training' is for 'model.layers'; a 'model.file' is used as "
                        f"trained. Remove the section.")
    _validate_map(doc, doc.data, SCHEMA, "")
    data = doc.data

    _check_sections(doc, data)
    ds, tr = data.get("dataset", {}), data.get("training", {})
    qu = data.get("quantization", {"representative_samples": 500})
    ac = data.get("acceptance", {"min_int8_accuracy": 0.0, "max_accuracy_drop": 100.0})
    cg = data.get("codegen", {})
    norm = ds.get("normalization", {"scale": 1.0})
    layers = _layers(doc, data["model"].get("layers", []), "model.layers")
    model_file = (path.parent / data["model"]["file"]).resolve() if "file" in data["model"] else None
    if model_file is not None and not model_file.exists():
        raise SpecError(f"{doc.where('model.file')}: 'model.file' is {model_file}, which does not exist.")
    dataset_path = (path.parent / ds["path"]).resolve() if "path" in ds else None
    output_dir = (path.parent / cg.get("output_dir", f"../build/tinyml/{data['name']}/generated")).resolve()
    app_dir = (path.parent / cg["app"]).resolve() if "app" in cg else None
    augmentation = tr.get("augmentation", {})
    gan = None
    if "generator" in data["model"]:
        quality = data["quality"]
        gan = GanSpec(
            latent_dim=data["model"]["latent_dim"],
            generator=_layers(doc, data["model"]["generator"], "model.generator"),
            discriminator=_layers(doc, data["model"]["discriminator"], "model.discriminator"),
            sample_every=tr.get("sample_every", 5),
            classifier=quality["classifier"],
            quality_samples=quality.get("samples", 2000),
            confidence=float(quality.get("confidence", 0.9)),
            min_confident_percent=float(ac["min_confident_percent"]),
            min_class_evenness=float(ac["min_class_evenness"]))
    return Spec(
        path=path,
        name=data["name"],
        description=data.get("description", ""),
        dataset=ds.get("name") or ds.get("path", ""),
        input_shape=tuple(ds.get("input_shape", ())),
        norm_scale=float(norm["scale"]),
        norm_offset=float(norm.get("offset", 0.0)),
        labels=tuple(ds.get("labels", ())),
        layers=layers,
        epochs=tr.get("epochs", 0),
        batch_size=tr.get("batch_size", 0),
        seed=tr.get("seed", 0),
        optimizer=tr.get("optimizer", {}),
        loss=tr.get("loss", {}),
        lr_schedule=tr.get("learning_rate_schedule"),
        warmup_epochs=tr.get("warmup_epochs", 0),
        shift_pixels=augmentation.get("shift_pixels", 0),
        rotation_degrees=float(augmentation.get("rotation_degrees", 0.0)),
        zoom=float(augmentation.get("zoom", 0.0)),
        validation_split=float(tr.get("validation_split", 0.0)),
        representative_samples=qu["representative_samples"],
        min_int8_accuracy=float(ac.get("min_int8_accuracy", 0.0)),
        max_accuracy_drop=float(ac.get("max_accuracy_drop", 100.0)),
        test_images=cg.get("test_images", 10),
        arena_margin_percent=float(cg.get("arena_margin_percent", 5.0)),
        arena_alignment=cg.get("arena_alignment", 16),
        output_dir=output_dir,
        app_dir=app_dir,
        budgets={board: Budget(b["flash"], b["ram"]) for board, b in data.get("budgets", {}).items()},
        raw=data,
        dataset_path=dataset_path,
        test_split=float(ds.get("test_split", 0.2)),
        dataset_line=doc.lines.get("dataset", 0),
        model_file=model_file,
        has_data=bool(ds.get("name") or ds.get("path")),
        gan=gan,
    )


def _layers(doc: _Located, items: list[dict[str, Any]], key: str) -> tuple[LayerSpec, ...]:
    return tuple(LayerSpec(item["class_name"], dict(item.get("config") or {}), doc.lines.get(f"{key}[{i}]", 0))
                 for i, item in enumerate(items))


def _check_sections(doc: _Located, data: dict[str, Any]) -> None:
    """What the schema cannot say alone: which sections one another need."""
    ds, model = data.get("dataset"), data["model"]
    if sum(key in model for key in ("layers", "file", "generator")) != 1:
        raise SpecError(f"{doc.where('model')}: 'model' needs exactly one of 'layers' (a network to train), "
                        f"'file' (a model trained elsewhere) or 'generator' (with 'discriminator' and "
                        f"'latent_dim': a GAN whose generator is deployed).")
    gan_keys = [key for key in ("latent_dim", "discriminator") if key in model]
    if "generator" not in model and gan_keys:
        raise SpecError(f"{doc.where('model.' + gan_keys[0])}: 'model.{gan_keys[0]}' belongs to a GAN; add "
                        f"'model.generator' or remove it.")
    if "generator" in model:
        for key in ("latent_dim", "discriminator"):
            if key not in model:
                raise SpecError(f"{doc.where('model')}: a GAN ('model.generator') needs 'model.{key}'.")
        for section in ("dataset", "training", "quantization", "acceptance", "quality"):
            if section not in data:
                raise SpecError(f"{doc.where('model.generator')}: a GAN spec needs a '{section}' section "
                                f"(see models/dcgan.yaml).")
        for key in ("min_confident_percent", "min_class_evenness"):
            if key not in data["acceptance"]:
                raise SpecError(f"{doc.where('acceptance')}: a GAN's acceptance needs 'acceptance.{key}' "
                                f"(a bar on the classifier's view of the generated images).")
    else:
        if "quality" in data:
            raise SpecError(f"{doc.where('quality')}: 'quality' judges a GAN's generated images; this spec has "
                            f"no 'model.generator'. Remove the section.")
        for key in ("training.sample_every", "acceptance.min_confident_percent", "acceptance.min_class_evenness"):
            section, name = key.split(".")
            if isinstance(data.get(section), dict) and name in data[section]:
                raise SpecError(f"{doc.where(key)}: '{key}' is for a GAN ('model.generator'); this spec has "
                                f"none. Remove it.")
    if ds is not None and ("name" in ds) == ("path" in ds):
        raise SpecError(f"{doc.where('dataset')}: 'dataset' needs exactly one of 'name' (a built-in set: mnist, "
                        f"fashion_mnist, cifar10, cifar100) or 'path' (an image folder or .npz).")
    if "layers" in model or "generator" in model:
        for key in ("input_shape",):
            if "dataset" in data and key not in data["dataset"]:
                raise SpecError(f"{doc.where('dataset')}: missing required key 'dataset.{key}'.")
        for key in ("epochs", "batch_size", "seed", "optimizer", "loss"):
            if "training" in data and key not in data["training"]:
                raise SpecError(f"{doc.where('training')}: missing required key 'training.{key}'.")
    if "layers" in model:
        for key in ("min_int8_accuracy", "max_accuracy_drop"):
            if "acceptance" in data and key not in data["acceptance"]:
                raise SpecError(f"{doc.where('acceptance')}: missing required key 'acceptance.{key}'.")
        for section in ("dataset", "training", "quantization", "acceptance"):
            if section not in data:
                raise SpecError(f"{doc.where('model.layers')}: a spec that trains 'model.layers' needs a "
                                f"'{section}' section (see models/mnist.yaml).")
        for key in ("input_shape",):
            if key not in ds:
                raise SpecError(f"{doc.where('dataset')}: missing required key 'dataset.{key}'.")
        for key in ("epochs", "batch_size", "seed", "optimizer", "loss"):
            if key not in data["training"]:
                raise SpecError(f"{doc.where('training')}: missing required key 'training.{key}'.")
    if ds is not None and "labels" not in ds and "name" in ds and "layers" in model:
        raise SpecError(f"{doc.where('dataset')}: missing required key 'dataset.labels' (the class names, in "
                        f"label order).")


def layer_stacks(spec: Spec) -> list[tuple[str, tuple[LayerSpec, ...], tuple[int, ...]]]:
    """Each Keras stack the spec defines: (spec key, layers, input shape)."""
    if spec.gan is not None:
        return [("model.generator", spec.gan.generator, (spec.gan.latent_dim,)),
                ("model.discriminator", spec.gan.discriminator, tuple(spec.input_shape))]
    return [("model.layers", spec.layers, tuple(spec.input_shape))]


def check_layers(spec: Spec) -> None:
    """Build every layer with Keras and each whole stack on its input shape.

    Catches an unknown layer, a bad layer argument, or an input shape the stack cannot take
    before any data is loaded or any training starts.
    """
    import keras  # deferred: seconds to import

    for stack, layers, shape in layer_stacks(spec):
        for i, layer in enumerate(layers):
            key = f"{stack}[{i}]"
            where = f"{spec.path}:{layer.line}" if layer.line else str(spec.path)
            cls = getattr(keras.layers, layer.class_name, None)
            if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
                close = _close_matches(layer.class_name, _keras_layer_names(keras))
                hint = f" Did you mean {', '.join(close)}?" if close else ""
                raise SpecError(f"{where}: '{key}.class_name' is '{layer.class_name}', which is not a Keras "
                                f"layer.{hint} Any class in keras.layers is allowed (e.g. Conv2D, Dense, "
                                f"MaxPooling2D, Flatten, ReLU).")
            try:
                cls.from_config(dict(layer.config))
            except Exception as exc:  # Keras raises TypeError/ValueError with useful text
                raise SpecError(f"{where}: '{key}.config' is not valid for {layer.class_name}: {exc}") from None
        try:
            model = build_stack(layers, shape, spec.name)
        except Exception as exc:
            given = (f"dataset.input_shape={list(shape)}" if stack != "model.generator"
                     else f"[model.latent_dim]={list(shape)}")
            raise SpecError(f"{spec.path}: the layers in '{stack}' cannot take the input shape {given}: "
                            f"{exc}") from None
        if stack == "model.layers" and spec.labels and model.output_shape[-1] != len(spec.labels):
            raise SpecError(f"{spec.path}: the last layer gives {model.output_shape[-1]} outputs but "
                            f"'dataset.labels' has {len(spec.labels)} labels; make them match.")
        if stack == "model.generator" and tuple(model.output_shape[1:]) != tuple(spec.input_shape):
            raise SpecError(f"{spec.path}: 'model.generator' makes images of shape {list(model.output_shape[1:])} "
                            f"but 'dataset.input_shape' is {list(spec.input_shape)}; make them match.")
        if stack == "model.discriminator" and tuple(model.output_shape[1:]) != (1,):
            raise SpecError(f"{spec.path}: 'model.discriminator' must end in one output (a real/fake logit), "
                            f"it gives {list(model.output_shape[1:])}; end it with Dense(units=1).")


def build_stack(layers: tuple[LayerSpec, ...], input_shape: tuple[int, ...], name: str,
                batch_size: int | None = None) -> Any:
    """A layer stack as a ``keras.Sequential`` on ``input_shape`` (untrained)."""
    import keras

    stack = [keras.Input(shape=input_shape, batch_size=batch_size, name="input")]
    for i, layer in enumerate(layers):
        config = dict(layer.config)
        # Fixed names keep tensor names, and so the .tflite bytes, identical from run to run.
        config.setdefault("name", f"{i}_{layer.class_name.lower()}")
        stack.append(getattr(keras.layers, layer.class_name).from_config(config))
    return keras.Sequential(stack, name=name)


def build_keras_model(spec: Spec) -> Any:
    """The spec's layer stack as a ``keras.Sequential`` on ``dataset.input_shape`` (untrained)."""
    model = build_stack(spec.layers, tuple(spec.input_shape), spec.name)
    output = model.output_shape
    if spec.labels and output[-1] != len(spec.labels):
        raise SpecError(f"{spec.path}: the last layer gives {output[-1]} outputs but "
                        f"'dataset.labels' has {len(spec.labels)} labels; make them match.")
    return model


def _keras_layer_names(keras: Any) -> list[str]:
    return [n for n in dir(keras.layers)
            if isinstance(getattr(keras.layers, n), type) and issubclass(getattr(keras.layers, n), keras.layers.Layer)]


def _close_matches(word: str, names: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(word, names, n=3, cutoff=0.6)
