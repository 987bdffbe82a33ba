"""Tools made from Python functions (the job tools, find_audio_tools) that refuse an argument the
function does not take, naming the field and what is allowed, as the capability tools do; and the
pass-through argument model of the tools that validate their own arguments.

The SDK derives a tool's schema and argument model from its function's signature, creating
pydantic models each time: about a third of building a server. A signature is the same for every
server a process builds, so that part is made once per function definition (and options), and
each server's tool only carries its own function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from pydantic import ConfigDict, ValidationError

__all__ = ["RawArguments", "strict_tool"]


class RawArguments(ArgModelBase):
    """Pass a call's arguments through untouched: the tool validates them itself."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


# (function definition, its defaults, the options) -> the tool as built, its strict argument
# model, and the name of the function's Context parameter.
_MADE: dict[tuple[Any, ...], tuple[Tool, type[ArgModelBase], str | None]] = {}


def strict_tool(fn: Callable[..., Any], output_schema: dict[str, Any], **options: Any) -> Tool:
    """`Tool.from_function(fn, **options)`, refusing unknown arguments, with `output_schema` (the
    SDK derives none from a CallToolResult return)."""
    key = (fn.__code__, repr(fn.__defaults__), repr(fn.__kwdefaults__), repr(sorted(options.items())))
    made = _MADE.get(key)
    if made is None or made[0].fn_metadata.output_schema != output_schema:
        made = _MADE[key] = _make(fn, output_schema, options)
    template, strict, context_name = made
    name, allowed = template.name, list(template.parameters.get("properties", {}))

    async def validated(arguments: dict[str, Any], ctx: Context) -> Any:
        try:
            values = strict.model_validate(arguments).model_dump_one_level()
        except ValidationError as exc:
            raise ToolError(_argument_problems(name, allowed, exc)) from exc
        if context_name is not None:
            values[context_name] = ctx
        return await fn(**values)

    return template.model_copy(update={"fn": validated})


def _make(
    fn: Callable[..., Any], output_schema: dict[str, Any], options: dict[str, Any]
) -> tuple[Tool, type[ArgModelBase], str | None]:
    tool = Tool.from_function(fn, **options)
    context_name = tool.context_kwarg

    class Strict(tool.fn_metadata.arg_model):  # type: ignore[name-defined,misc]
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tool.context_kwarg = "ctx"  # `validated`'s, which hands it on under the function's own name
    tool.fn_metadata = FuncMetadata(arg_model=RawArguments, output_schema=output_schema)
    tool.parameters = _without_titles(tool.parameters) | {"additionalProperties": False}
    return tool, Strict, context_name


def _argument_problems(tool: str, allowed: list[str], exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"`{field}`: unknown argument. Allowed arguments: {', '.join(allowed)}.")
        else:
            reason = err["msg"][:1].lower() + err["msg"][1:]
            lines.append(f"`{field}`: got {repr(err.get('input'))[:80]}; {reason}.")
    return f"Invalid arguments for {tool}:\n" + "\n".join(f"- {line}" for line in lines)


def _without_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic titles repeat the names; every byte of tools/list is paid for in each conversation."""
    compact = {k: v for k, v in schema.items() if k != "title"}
    if "properties" in compact:
        compact["properties"] = {name: _without_titles(prop) for name, prop in compact["properties"].items()}
    return compact
