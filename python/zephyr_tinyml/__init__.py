"""zephyr-tinyml: spec -> data -> train -> quantize -> verify -> codegen -> firmware -> report.

The folders follow the pipeline, and a stage never imports a later one:

- :mod:`zephyr_tinyml.model`: the model pipeline, spec to generated C sources
  (:mod:`~zephyr_tinyml.model.pipeline` runs it);
- :mod:`zephyr_tinyml.firmware`: the Zephyr workspace, building the app, flash/RAM budgets and reports;
- :mod:`zephyr_tinyml.device`: the UART evaluation of a running board against host TFLM.

Shared by all: :mod:`~zephyr_tinyml.errors`, :mod:`~zephyr_tinyml.fileio`, :mod:`~zephyr_tinyml.ui`.
The `tinyml` console script and the `west tinyml` command are two thin front doors
(:mod:`~zephyr_tinyml.cli`); :mod:`~zephyr_tinyml.doctor` checks what the tool needs.
"""

__version__ = "0.1.0"
