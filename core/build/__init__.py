"""Spec -> one keras.Model: the builder, its adapters, what trains, its size, the pre-flight report.

- `stacking`: build(spec) and check(spec); `wiring`: the one graph builder (every mode is a
  preset that produces a graph, core.spec.presets); `assembler`: adapting each edge;
- `adapters`: what fits one member's output to the next member's input;
- `trainability`: freezing and unfreezing, parameter counts; `budget`: a stack's size from
  its shapes, before any weight exists; `report`: the pre-flight report's records;
- `templates`: the built-in sub-models, by name.
"""
