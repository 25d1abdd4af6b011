"""The model pipeline: spec → data → train → quantize → verify → codegen (imports only the package's shared modules)."""
