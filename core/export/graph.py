"""Walking a model's graph into one `build_<name>()` function per nested model.

The walk starts at a Functional model's outputs and goes back through the layers'
inbound nodes, so branches, merges and shared layers come out as they are, without
knowing which template built them. Each nested model gets its own function (a member, or
a sub-model inside one); a member shipped as a model file gets a `load_<name>()` that
loads it, cuts it where the stack does and re-applies its trainability. A model with no
layer-by-layer form (a subclassed model, an unusual call argument) is emitted as
`keras.saving.deserialize_keras_object({...})` with its full config.

Example:
    >>> writer = ScriptWriter(member_files={"base": "members/base.keras"})
    >>> writer.model_function(stack, top_level=True)
    'build_model'
    >>> [function.split("(")[0] for function in writer.functions]
    ['def load_base', 'def build_head', 'def build_model']
"""

from __future__ import annotations

import inspect
from typing import Any

import keras

from core.export.layers import (
    application_call,
    deserialize_call,
    input_call,
    layer_expression,
    op_call,
)
from core.export.source import (
    RESERVED_NAMES,
    Bracket,
    Call,
    Expr,
    Unrenderable,
    claim_name,
    dict_expr,
    docstring_lines,
    get_layer_call,
    identifier,
    inline_literal,
    is_keyword_name,
    layout,
    literal,
    prefixed,
    prose,
    sequence_expr,
)

# ---- walking graphs ---------------------------------------------------------------------------


def history_node(tensor):
    """The node whose call produced `tensor`."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]


def graph_nodes(model: keras.Model) -> list:
    """The model's own call nodes in an order where each node's inputs already exist.

    Found by walking back from the outputs through inbound nodes to the inputs, then
    ordered like `model.layers` (repeated passes, as Keras does when it rebuilds a graph).
    """
    input_ids = {id(tensor) for tensor in model.inputs}
    own: dict[int, Any] = {}
    pending = list(model.outputs)
    while pending:
        tensor = pending.pop()
        if id(tensor) in input_ids:
            continue
        node = history_node(tensor)
        if id(node) not in own:
            own[id(node)] = node
            pending += node.arguments.keras_tensors
    ordered: list = []
    available = set(input_ids)
    while len(ordered) < len(own):
        progressed = False
        for operation in model.operations:
            for node in operation._inbound_nodes:
                if id(node) in own and node not in ordered and all(
                    id(t) in available for t in node.arguments.keras_tensors
                ):
                    ordered.append(node)
                    available.update(id(t) for t in node.outputs)
                    progressed = True
        if not progressed:
            raise Unrenderable(f"the graph of '{model.name}' has nodes that never get inputs")
    return ordered


def _is_functional(model: keras.Model) -> bool:
    # keras.Model(inputs, outputs) returns an instance of the (non-public) Functional class;
    # a subclass of it may add behaviour that layers cannot express.
    return type(model).__name__ == "Functional"


# ---- one function per nested model ------------------------------------------------------------


class ScriptWriter:
    """Collects one function per nested model, helpers before the functions that use them."""

    def __init__(self, member_files: dict[str, str]) -> None:
        self.member_files = member_files
        self.functions: list[str] = []
        self.function_names: set[str] = {"build_model", "compile_model"}
        self.rendered: dict[int, str] = {}  # id(model) -> function name
        self.top: keras.Model | None = None

    def model_function(self, model: keras.Model, top_level: bool = False,
                       mixed_precision: bool = False, role: str = "Member") -> str:
        """Emit the function that builds (or loads) `model`; returns the function's name."""
        if id(model) in self.rendered:
            return self.rendered[id(model)]
        loaded = model.name in self.member_files and not top_level
        if top_level:
            self.top = model
            name = "build_model"
        else:
            verb = "load" if loaded else "build"
            name = claim_name(f"{verb}_{identifier(model.name)}", self.function_names)
        self.rendered[id(model)] = name
        what = "The stack" if top_level else f"{role} '{prose(model.name)}'"
        lines = [f"def {name}():"]
        if loaded:
            lines += docstring_lines(f"{what}, loaded from {prose(self.member_files[model.name])}.")
            lines += self._load_lines(model)
            self.functions.append("\n".join(lines))
            return name
        setup, final, note = self._build_lines(model, top_level)
        lines += docstring_lines(f"{what}: {note}.")
        if mixed_precision:
            lines.append('    keras.config.set_dtype_policy("mixed_float16")')
        lines += setup
        # Whether a nested model is frozen as a whole is set where it is used.
        after = ["    model.trainable = False"] if top_level and not model.trainable else []
        after += _freeze_lines(model, "model") if final.opener.startswith(
            "keras.applications.") and model.trainable else []
        if after:
            lines += layout(final, 4, "model = ") + after + ["    return model"]
        else:
            lines += layout(final, 4, "return ")
        self.functions.append("\n".join(lines))
        return name

    # -- building from layers

    def _build_lines(self, model: keras.Model, top_level: bool) -> tuple[list[str], Bracket, str]:
        """Statements, the expression that makes the model, and what the function does."""
        application = application_call(model)
        if application is not None:
            constructor = application.opener.removeprefix("keras.applications.")[:-1]
            return [], application, (
                f"Keras Applications {constructor}, without ImageNet weights (the trained "
                "weights are in model.keras)")
        try:
            if isinstance(model, keras.Sequential):
                return *self._sequential_lines(model), "its layers, as in the trained stack"
            if _is_functional(model):
                note = ("members, adapters and combining layers, wired as trained" if top_level
                        else "its layers, as in the trained stack")
                return *self._functional_lines(model), note
            raise Unrenderable("a subclassed model")
        except Unrenderable:
            # No layer-by-layer form (a subclassed model, an unusual call argument): the
            # full config still rebuilds the same architecture.
            return [], deserialize_call(model), "rebuilt from its full Keras config"

    def _sub_models(self, layers, frozen_parent: bool, names: set[str],
                    role: str) -> tuple[list[str], dict]:
        """Lines that create each nested model once; returns them and id -> variable."""
        lines, variables = [], {}
        for layer in layers:
            if isinstance(layer, keras.Model) and id(layer) not in variables:
                function = self.model_function(layer, role=role)
                variable = claim_name(identifier(layer.name), names)
                variables[id(layer)] = variable
                lines.append(f"    {variable} = {function}()")
                if not layer.trainable and not frozen_parent and layer.name not in self.member_files:
                    lines.append(f"    {variable}.trainable = False")
        return lines, variables

    def _sequential_lines(self, model: keras.Sequential) -> tuple[list[str], Bracket]:
        names = set(RESERVED_NAMES)
        frozen = not model.trainable
        lines, variables = self._sub_models(model.layers, frozen, names, "Sub-model")
        items: list[Expr] = []
        config = model.get_config()
        first = config["layers"][0] if config["layers"] else None
        if first is not None and first["class_name"] == "InputLayer":
            items.append(input_call(first["config"]))
        for layer in model.layers:
            items.append(variables.get(id(layer)) or layer_expression(layer, frozen))
        arguments: list[Expr] = [Bracket("[", items, "]"), f"name={inline_literal(model.name)}"]
        if first is None or first["class_name"] != "InputLayer":
            # Built from a shape rather than an Input: the same shape goes in as an Input.
            shape = config.get("build_input_shape")
            if shape is None:
                raise Unrenderable(f"Sequential '{model.name}' was never built")
            items.insert(0, input_call({"batch_shape": shape, "name": "input_layer"}))
        return lines, Bracket("keras.Sequential(", arguments)

    def _functional_lines(self, model: keras.Model) -> tuple[list[str], Bracket]:
        frozen = not model.trainable
        nodes = graph_nodes(model)
        names = set(RESERVED_NAMES)
        role = "Member" if model is self.top else "Sub-model"
        lines, variables = self._sub_models([n.operation for n in nodes], frozen, names, role)
        uses: dict[int, list[int]] = {}  # id(tensor) -> indexes of nodes using it
        for index, node in enumerate(nodes):
            for tensor in node.arguments.keras_tensors:
                uses.setdefault(id(tensor), []).append(index)
        output_ids = [id(t) for t in model.outputs]
        tensor_names: dict[int, str] = {}

        # Inputs.
        for tensor in model.inputs:
            input_layer = tensor._keras_history[0]
            variable = "inputs" if len(model.inputs) == 1 else claim_name(
                identifier(input_layer.name), names)
            tensor_names[id(tensor)] = variable
            lines += layout(input_call(input_layer.get_config()), 4, f"{variable} = ")

        # Layer calls.
        calls = {}
        for node in nodes:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
        for index, node in enumerate(nodes):
            operation = node.operation
            arguments = self._call_arguments(node, tensor_names)
            if not isinstance(operation, keras.layers.Layer):
                call = op_call(node, arguments)  # a keras.ops function in the graph
            elif id(operation) in variables:
                call = Call(variables[id(operation)], arguments)
            elif calls[id(operation)] > 1:
                # A shared layer: create it once, call it at each node.
                variable = claim_name(identifier(operation.name), names)
                variables[id(operation)] = variable
                lines += layout(layer_expression(operation, frozen), 4, f"{variable} = ")
                call = Call(variable, arguments)
            else:
                call = Call(layer_expression(operation, frozen), arguments)
            outputs = node.outputs
            structure = getattr(operation, "_outputs_struct", None)
            if len(outputs) > 1 and (isinstance(structure, dict) or any(
                    isinstance(item, (list, tuple, dict)) for item in structure or [])):
                raise Unrenderable("nested outputs cannot be unpacked into names")
            if len(outputs) == 1:
                tensor = outputs[0]
                used_by = uses.get(id(tensor), [])
                if output_ids == [id(tensor)] and index == len(nodes) - 1 and not used_by:
                    target = "outputs"
                elif used_by == [index + 1] and id(tensor) not in output_ids:
                    target = "x"
                else:
                    base = operation.name + ("_output" if id(operation) in variables else "")
                    target = claim_name(identifier(base), names)
                tensor_names[id(tensor)] = target
            else:
                targets = []
                for position, tensor in enumerate(outputs):
                    target = claim_name(identifier(f"{operation.name}_output_{position}"), names)
                    tensor_names[id(tensor)] = target
                    targets.append(target)
                target = ", ".join(targets)
            lines += layout(call, 4, f"{target} = ")

        inputs_expr = _tensors_expr(model._inputs_struct, tensor_names)
        outputs_expr = _tensors_expr(model._outputs_struct, tensor_names)
        return lines, Bracket("keras.Model(", [inputs_expr, outputs_expr,
                                               f"name={inline_literal(model.name)}"])

    def _call_arguments(self, node, tensor_names: dict[int, str]) -> list[Expr]:
        arguments = [_tensors_expr(value, tensor_names) for value in node.arguments.args]
        try:
            defaults = inspect.signature(node.operation.call).parameters
        except (TypeError, ValueError):
            defaults = {}
        for key, value in node.arguments.kwargs.items():
            if not is_keyword_name(key):
                raise Unrenderable(f"call argument {key!r} is not a Python name")
            parameter = defaults.get(key)
            if parameter is not None and parameter.default is not inspect.Parameter.empty and (
                    not isinstance(value, keras.KerasTensor) and value == parameter.default):
                continue  # e.g. mask=None, which Keras records for every nested-model call
            arguments.append(prefixed(f"{key}=", _tensors_expr(value, tensor_names)))
        return arguments

    # -- loading from a file

    def _load_lines(self, model: keras.Model) -> list[str]:
        path = self.member_files[model.name]
        lines = [
            f"    source = keras.saving.load_model(HERE / {inline_literal(path)}, compile=False)",
        ]
        output_layers = [t._keras_history[0].name for t in model.outputs]
        outputs = ", ".join(f"{get_layer_call('source', n)}.output" for n in output_layers)
        if len(output_layers) > 1:
            outputs = f"[{outputs}]"
        call = Bracket("keras.Model(", ["source.inputs", outputs,
                                        f"name={inline_literal(model.name)}"])
        lines.append(f"    # The stack uses the model up to layer {prose(', '.join(output_layers))}.")
        lines += layout(call, 4, "model = ")
        lines.append("    # Trainability as in the stack, whatever flags the file was saved with.")
        lines.append(f"    model.trainable = {bool(model.trainable)}")
        if model.trainable:
            lines += _freeze_lines(model, "model")
        return lines + ["    return model"]


def _freeze_lines(model: keras.Model, variable: str, indent: int = 4) -> list[str]:
    """Statements that set `trainable=False` wherever it is set inside `model`."""
    pad = " " * indent
    if not model.trainable:
        return [f"{pad}{variable}.trainable = False"]
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    frozen = [layer for layer in layers if not layer.trainable]
    lines = []
    if len(frozen) > 3 and frozen == layers[: len(frozen)]:
        # The bottom of a backbone frozen for fine-tuning: one loop, not a line per layer.
        count = model.layers.index(frozen[-1]) + 1
        lines += [f"{pad}for layer in {variable}.layers[:{count}]:",
                  f"{pad}    layer.trainable = False"]
    else:
        lines += [f"{pad}{get_layer_call(variable, layer.name)}.trainable = False"
                  for layer in frozen]
    for layer in layers:
        if layer.trainable and isinstance(layer, keras.Model):
            lines += _freeze_lines(layer, get_layer_call(variable, layer.name), indent)
    return lines


def _tensors_expr(value, tensor_names: dict[int, str]) -> Expr:
    """A call argument or a model's inputs or outputs: each tensor by its variable's name,
    lists, tuples and dicts of them as such, any other value as a literal."""

    def render(item) -> Expr:
        return _tensors_expr(item, tensor_names)

    if isinstance(value, keras.KerasTensor):
        return tensor_names[id(value)]
    if isinstance(value, dict):
        return dict_expr(value, render)
    if isinstance(value, (list, tuple)):
        return sequence_expr(value, render)
    return literal(value)
