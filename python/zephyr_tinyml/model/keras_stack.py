"""The training stage's Keras side of a spec: its layer stacks checked, and built as Keras models.

Separate from ``spec.py`` because importing Keras takes seconds: loading and validating a spec
(``tinyml list``, ``size``, ``eval``) should not pay for it. Checked before any data is loaded, so a
bad layer fails in a second, not after the data set is read.
"""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import SpecError
from .spec import LayerSpec, Spec


def layer_stacks(spec: Spec) -> list[tuple[str, tuple[LayerSpec, ...], tuple[int, ...]]]:
    """Each Keras stack the spec defines: (spec key, layers, input shape)."""
    if spec.model.gan is not None:
        return [("model.generator", spec.model.gan.generator, (spec.model.gan.latent_dim,)),
                ("model.discriminator", spec.model.gan.discriminator, tuple(spec.dataset.input_shape))]
    return [("model.layers", spec.model.layers, tuple(spec.dataset.input_shape))]


def check_layers(spec: Spec) -> None:
    """Build every layer with Keras and each whole stack on its input shape.

    Catches an unknown layer, a bad layer argument, or an input shape the stack cannot take
    before any data is loaded or any training starts.
    """
    import keras  # deferred: seconds to import, and only the training stage needs it

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
        if stack == "model.layers" and spec.dataset.labels and model.output_shape[-1] != len(spec.dataset.labels):
            raise SpecError(f"{spec.path}: the last layer gives {model.output_shape[-1]} outputs but "
                            f"'dataset.labels' has {len(spec.dataset.labels)} labels; make them match.")
        if stack == "model.generator" and tuple(model.output_shape[1:]) != tuple(spec.dataset.input_shape):
            raise SpecError(f"{spec.path}: 'model.generator' makes images of shape {list(model.output_shape[1:])} "
                            f"but 'dataset.input_shape' is {list(spec.dataset.input_shape)}; make them match.")
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
    model = build_stack(spec.model.layers, tuple(spec.dataset.input_shape), spec.name)
    output = model.output_shape
    if spec.dataset.labels and output[-1] != len(spec.dataset.labels):
        raise SpecError(f"{spec.path}: the last layer gives {output[-1]} outputs but "
                        f"'dataset.labels' has {len(spec.dataset.labels)} labels; make them match.")
    return model


def _keras_layer_names(keras: Any) -> list[str]:
    return [n for n in dir(keras.layers)
            if isinstance(getattr(keras.layers, n), type) and issubclass(getattr(keras.layers, n), keras.layers.Layer)]


def _close_matches(word: str, names: list[str]) -> list[str]:
    return difflib.get_close_matches(word, names, n=3, cutoff=0.6)
