"""zephyr-tinyml: spec -> data -> train -> quantize -> verify -> codegen -> firmware -> report.

Each stage is a module named after it; a stage never imports a later one.  The `tinyml` console
script and the `west tinyml` command are two thin front doors onto :mod:`zephyr_tinyml.pipeline`.
"""

__version__ = "0.1.0"
