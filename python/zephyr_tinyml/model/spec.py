"""Model spec: load a YAML file, validate every key, and hand the pipeline typed values.

Why strict: a typo such as ``epoch:`` silently ignored would train the wrong model for ten minutes.
Every error names the file, the key path and the line, and says what is allowed.  The schema
(:data:`SCHEMA`) states each key's type, check and default once; :class:`Spec` holds one typed
record per section (dataset, model, training, quantization, acceptance, quality, codegen, budgets).
Layers are given in Keras' own ``class_name`` + ``config`` form, so a spec accepts any Keras layer;
the training stage checks and builds them with Keras (``keras_stack.py``: importing Keras takes
seconds, and ``tinyml list`` should not pay for it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import SpecError
from ..fileio import content_hash

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
    """Region budgets in bytes for one board. On a TF-M board target built with the model in the
    secure partition, ``flash``/``ram`` bound the non-secure app's image and ``secure_flash`` /
    ``secure_ram`` TF-M's secure image, which holds the model, TFLM and the arena."""

    flash: int
    ram: int
    secure_flash: int | None = None
    secure_ram: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """``dataset``: where the data comes from and how the model sees it."""

    name: str                         # a built-in set, "" for a path or no data
    path: Path | None                 # image folder or .npz (dataset.path), resolved
    display: str                      # the built-in name, or the path as written (for messages)
    input_shape: tuple[int, ...]
    norm_scale: float                 # model input = pixel * scale + offset
    norm_offset: float
    labels: tuple[str, ...]
    test_split: float                 # share of an image folder kept for testing
    line: int                         # where the section starts in the spec (0: not from a file)

    @property
    def has_data(self) -> bool:
        """False for a model file given without any data."""
        return bool(self.name or self.path)


@dataclass(frozen=True)
class GanSpec:
    """A generative adversarial network (``model.generator``): only the generator is quantized and
    deployed; the discriminator exists to train it."""

    latent_dim: int
    generator: tuple[LayerSpec, ...]
    discriminator: tuple[LayerSpec, ...]


@dataclass(frozen=True)
class ModelSpec:
    """``model``: exactly one of a layer stack to train, a file trained elsewhere, or a GAN."""

    layers: tuple[LayerSpec, ...]
    file: Path | None                 # model.file, resolved
    gan: GanSpec | None


@dataclass(frozen=True)
class TrainingSpec:
    """``training``: what the training stage does (zeros for a model file, which is not trained)."""

    epochs: int
    batch_size: int
    seed: int                         # also the seed of the data split and the embedded test inputs
    optimizer: dict[str, Any]
    loss: dict[str, Any]
    lr_schedule: dict[str, Any] | None
    warmup_epochs: int
    shift_pixels: int
    rotation_degrees: float
    zoom: float
    validation_split: float
    sample_every: int                 # a GAN: epochs between sample grids


@dataclass(frozen=True)
class QuantizationSpec:
    """``quantization``: full-integer int8 with a representative data set of this many samples."""

    representative_samples: int


@dataclass(frozen=True)
class AcceptanceSpec:
    """``acceptance``: the bars a build must pass (a classifier's accuracy, a GAN's quality)."""

    min_int8_accuracy: float
    max_accuracy_drop: float
    min_confident_percent: float | None   # a GAN: share of confidently classified images, int8 generator
    min_class_evenness: float | None      # a GAN: normalized entropy of the class histogram (1 = even)
    # Where TFLM's kernel differs from TFLite's by design (an LSTM): TFLite reference accuracy minus
    # TFLM's, at most, in points; and how often the two pick the same argmax, at least, in percent.
    max_kernel_accuracy_gap: float = 0.5
    min_kernel_argmax_agreement: float = 99.0


@dataclass(frozen=True)
class QualitySpec:
    """``quality``: how a GAN's images are judged, by a classifier of our own."""

    classifier: str                   # spec (name or path) of the classifier that judges the digits
    samples: int                      # generated images the classifier labels
    confidence: float                 # softmax probability that counts as "confidently classified"


@dataclass(frozen=True)
class CodegenSpec:
    """``codegen``: what the generated sources embed and where they go."""

    test_images: int
    arena_margin_percent: float
    arena_alignment: int
    output_dir: Path
    app_dir: Path | None
    secure: bool = False              # TF-M board targets: the model in the secure partition


@dataclass(frozen=True)
class Spec:
    """A validated model spec, one typed record per section.  ``raw`` keeps the parsed YAML for hashing."""

    path: Path
    name: str
    description: str
    dataset: DatasetSpec
    model: ModelSpec
    training: TrainingSpec
    quantization: QuantizationSpec
    acceptance: AcceptanceSpec
    codegen: CodegenSpec
    budgets: dict[str, Budget]
    quality: QualitySpec | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

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
    # The value when the key is not written (also when its whole section is not): the one place a
    # spec's defaults are stated. ``None`` with ``required`` or no default: nothing is filled in.
    default: Any = None


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
        "test_split": Key("float", check=_open_fraction, doc="share of a class folder kept for testing",
                          default=0.2),
        "input_shape": Key("list", items=Key("int", check=_positive), default=[]),
        "normalization": Key("map", children={
            "scale": Key("float", required=True, default=1.0),
            "offset": Key("float", default=0.0),
        }),
        "labels": Key("list", items=Key("str"), default=[]),
    }),
    "model": Key("map", required=True, children={
        "layers": Key("list", items=Key("map", children=KERAS_OBJECT)),
        "file": Key("str", doc="a model trained elsewhere: .tflite, .keras, .h5 or a SavedModel folder"),
        "latent_dim": Key("int", check=_positive, doc="a GAN generator's input size"),
        "generator": Key("list", items=Key("map", children=KERAS_OBJECT)),
        "discriminator": Key("list", items=Key("map", children=KERAS_OBJECT)),
    }),
    "training": Key("map", children={
        # Without a training section (a model file): nothing is trained, the seed is 0.
        "epochs": Key("int", required=True, check=_positive, default=0),
        "batch_size": Key("int", required=True, check=_positive, default=0),
        "seed": Key("int", required=True, check=_non_negative, default=0),
        "optimizer": Key("map", required=True, children=KERAS_OBJECT, default={}),
        "loss": Key("map", required=True, children=KERAS_OBJECT, default={}),
        "learning_rate_schedule": Key("map", children=KERAS_OBJECT),
        "warmup_epochs": Key("int", check=_non_negative, default=0),
        "augmentation": Key("map", children={
            "shift_pixels": Key("int", check=_non_negative, default=0),
            "rotation_degrees": Key("float", check=_degrees, doc="degrees", default=0.0),
            "zoom": Key("float", check=_fraction, doc="fraction", default=0.0),
        }),
        "validation_split": Key("float", check=_fraction, default=0.0),
        "sample_every": Key("int", check=_positive, doc="epochs between a GAN's sample grids", default=5),
    }),
    "quantization": Key("map", children={
        "representative_samples": Key("int", required=True, check=_positive, default=500),
        "input_type": Key("str", check=_int8, default="int8"),
        "output_type": Key("str", check=_int8, default="int8"),
    }),
    "acceptance": Key("map", children={
        "min_int8_accuracy": Key("float", check=_percent, doc="percent", default=0.0),
        "max_accuracy_drop": Key("float", check=_percent, doc="percentage points", default=100.0),
        "min_confident_percent": Key("float", check=_percent, doc="a GAN: percent of generated images "
                                                                  "the classifier is confident about"),
        "min_class_evenness": Key("float", check=_unit, doc="a GAN: normalized entropy of the classes drawn"),
        "max_kernel_accuracy_gap": Key("float", check=_percent, default=0.5,
                                       doc="percentage points: TFLite reference minus TFLM accuracy, where an op's "
                                           "TFLM kernel differs from TFLite's by design (an LSTM)"),
        "min_kernel_argmax_agreement": Key("float", check=_percent, default=99.0,
                                           doc="percent of inputs on which TFLM and TFLite's reference kernels "
                                               "pick the same argmax, where an op's kernels differ by design"),
    }),
    "quality": Key("map", children={
        "classifier": Key("str", required=True, doc="the spec (name or .yaml) of the classifier that judges "
                                                    "a GAN's images"),
        "samples": Key("int", check=_positive, default=2000),
        "confidence": Key("float", check=_open_fraction, default=0.9),
    }),
    "codegen": Key("map", children={
        "test_images": Key("int", check=_positive, default=10),
        "arena_margin_percent": Key("float", check=_percent, default=5.0),
        "arena_alignment": Key("int", check=_power_of_two, default=16),
        "output_dir": Key("str", doc="relative to the spec's folder", default="../build/tinyml/{name}/generated"),
        "app": Key("str"),
        "secure": Key("bool", doc="on a TF-M board target (mps2_an521_ns, ...): the model in the zephyr-tinyml "
                                  "TF-M secure partition, as `tinyml build --secure`"),
    }),
    "budgets": Key("budgets"),
}

BUDGET_KEYS = {"flash": Key("int", required=True, check=_positive),
               "ram": Key("int", required=True, check=_positive),
               # a secure build (codegen.secure, --secure): TF-M's secure image, with the model
               "secure_flash": Key("int", check=_positive),
               "secure_ram": Key("int", check=_positive)}

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

    @classmethod
    def from_lines(cls, path: Path, lines: dict[str, int]) -> _Located:
        """The key lines of a document already read (for messages after validation)."""
        located = cls.__new__(cls)
        located.path, located.lines, located.data = path, lines, None
        return located

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
    return spec_from_data(data, path, doc.lines)


def with_defaults(value: dict[str, Any] | None, children: dict[str, Key]) -> dict[str, Any]:
    """A section as written, with the schema's default for every key not written (nested maps too)."""
    value = dict(value or {})
    for name, child in children.items():
        nested = child.kind == "map" and bool(child.children)
        if name in value:
            if nested:
                value[name] = with_defaults(value[name], child.children or {})
        elif child.default is not None:
            value[name] = copy.deepcopy(child.default)
        elif nested and any(c.default is not None for c in (child.children or {}).values()):
            value[name] = with_defaults(None, child.children or {})
    return value


def spec_from_data(data: dict[str, Any], path: Path, lines: dict[str, int] | None = None, *,
                   output_dir: Path | None = None, description: str | None = None) -> Spec:
    """The typed spec of a validated document (a YAML file's, or the one a model file is given):
    relative paths resolve against ``path``'s folder; what is not written takes the schema's default."""
    lines = lines or {}
    section = {name: with_defaults(data.get(name), key.children or {}) for name, key in SCHEMA.items()
               if key.kind == "map"}
    ds, mo, tr, qu = section["dataset"], section["model"], section["training"], section["quantization"]
    ac, ql, cg = section["acceptance"], section["quality"], section["codegen"]
    located = _Located.from_lines(path, lines)
    model_file = (path.parent / mo["file"]).resolve() if "file" in mo else None
    if model_file is not None and not model_file.exists():
        raise SpecError(f"{located.where('model.file')}: 'model.file' is {model_file}, which does not exist.")
    gan = None
    if "generator" in mo:
        gan = GanSpec(latent_dim=mo["latent_dim"], generator=_layers(lines, mo["generator"], "model.generator"),
                      discriminator=_layers(lines, mo["discriminator"], "model.discriminator"))
    augmentation = tr["augmentation"]
    return Spec(
        path=path,
        name=data["name"],
        description=description if description is not None else data.get("description", ""),
        dataset=DatasetSpec(
            name=ds.get("name", ""),
            path=(path.parent / ds["path"]).resolve() if "path" in ds else None,
            display=ds.get("name") or ds.get("path", ""),
            input_shape=tuple(ds["input_shape"]),
            norm_scale=float(ds["normalization"]["scale"]),
            norm_offset=float(ds["normalization"]["offset"]),
            labels=tuple(ds["labels"]),
            test_split=float(ds["test_split"]),
            line=lines.get("dataset", 0)),
        model=ModelSpec(layers=_layers(lines, mo.get("layers", []), "model.layers"), file=model_file, gan=gan),
        training=TrainingSpec(
            epochs=tr["epochs"], batch_size=tr["batch_size"], seed=tr["seed"], optimizer=tr["optimizer"],
            loss=tr["loss"], lr_schedule=tr.get("learning_rate_schedule"), warmup_epochs=tr["warmup_epochs"],
            shift_pixels=augmentation["shift_pixels"], rotation_degrees=float(augmentation["rotation_degrees"]),
            zoom=float(augmentation["zoom"]), validation_split=float(tr["validation_split"]),
            sample_every=tr["sample_every"]),
        quantization=QuantizationSpec(representative_samples=qu["representative_samples"]),
        acceptance=AcceptanceSpec(
            min_int8_accuracy=float(ac["min_int8_accuracy"]), max_accuracy_drop=float(ac["max_accuracy_drop"]),
            min_confident_percent=_float_or_none(ac.get("min_confident_percent")),
            min_class_evenness=_float_or_none(ac.get("min_class_evenness")),
            max_kernel_accuracy_gap=float(ac["max_kernel_accuracy_gap"]),
            min_kernel_argmax_agreement=float(ac["min_kernel_argmax_agreement"])),
        codegen=CodegenSpec(
            test_images=cg["test_images"], arena_margin_percent=float(cg["arena_margin_percent"]),
            arena_alignment=cg["arena_alignment"],
            output_dir=Path(output_dir) if output_dir is not None else
            (path.parent / cg["output_dir"].format(name=data["name"])).resolve(),
            app_dir=(path.parent / cg["app"]).resolve() if "app" in cg else None,
            secure=bool(cg.get("secure", False))),
        budgets={board: Budget(b["flash"], b["ram"], b.get("secure_flash"), b.get("secure_ram"))
                 for board, b in data.get("budgets", {}).items()},
        quality=QualitySpec(classifier=ql["classifier"], samples=ql["samples"], confidence=float(ql["confidence"]))
        if "quality" in data else None,
        raw=data,
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _layers(lines: dict[str, int], items: list[dict[str, Any]], key: str) -> tuple[LayerSpec, ...]:
    return tuple(LayerSpec(item["class_name"], dict(item.get("config") or {}), lines.get(f"{key}[{i}]", 0))
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
