"""OpenAI request shapes -> harmony-side dataclasses (ChatMessage, Tool), with errors that say what to fix.

Chat Completions messages and Responses input items both end up as `ChatMessage`s; tool results find
the function they answer through the `tool_call_id` / `call_id` of the assistant's earlier call.
"""

from __future__ import annotations

import re
from typing import Any

from ossgate import structured
from ossgate.backends.base import ToolChoice
from ossgate.errors import InvalidRequest
from ossgate.harmony import ChatMessage, ResponseFormat, Tool, ToolCall

ROLES = ("system", "developer", "user", "assistant", "tool")
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "minimal": "low"}  # minimal: OpenAI's gpt-5 level
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for tool and response format names
_SCHEMA_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def effort_of(value: str | None, param: str) -> str:
    if value is None:
        return "medium"
    if value not in EFFORTS:
        raise InvalidRequest(f"{param} must be one of low, medium, high; got {value!r}", param=param)
    return EFFORTS[value]


def text_of(content: Any, param: str) -> str:
    """A message's content as text: a string, or a list of text parts (gpt-oss reads text only)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("text", "input_text", "output_text", "reasoning_text", "summary_text"):
                parts.append(str(part.get("text", "")))
            elif kind == "refusal":
                parts.append(str(part.get("refusal", "")))
            else:
                raise InvalidRequest(
                    f"{param}[{j}] has type {kind!r}; gpt-oss reads text only (use text parts)", param=f"{param}[{j}]"
                )
        return "".join(parts)
    raise InvalidRequest(f"{param} must be a string or a list of text parts", param=param)


def _check_schema(schema: Any, where: str, depth: int = 0) -> None:
    """A structural check of a JSON schema: enough to catch the mistakes that break tool rendering."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{where} must be a JSON schema object, got {type(schema).__name__}", param=where)
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if bad := [k for k in kinds if k not in _SCHEMA_TYPES]:
        raise InvalidRequest(
            f"{where}.type {bad[0]!r} is not a JSON schema type ({', '.join(sorted(_SCHEMA_TYPES))})", param=where
        )
    if depth > 32:
        raise InvalidRequest(f"{where} nests deeper than 32 levels", param=where)
    if "properties" in schema:
        props = schema["properties"]
        if not isinstance(props, dict):
            raise InvalidRequest(f"{where}.properties must be an object mapping names to schemas", param=where)
        for name, sub in props.items():
            _check_schema(sub, f"{where}.properties.{name}", depth + 1)
    if "items" in schema and not isinstance(schema["items"], bool):
        _check_schema(schema["items"], f"{where}.items", depth + 1)
    required = schema.get("required")
    if required is not None and (not isinstance(required, list) or not all(isinstance(r, str) for r in required)):
        raise InvalidRequest(f"{where}.required must be a list of property names", param=where)
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise InvalidRequest(f"{where}.enum must be a list", param=where)


def tool_of(name: Any, description: Any, parameters: Any, where: str) -> Tool:
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise InvalidRequest(f"{where}.name must be 1-64 letters, digits, _ or -; got {name!r}", param=f"{where}.name")
    if parameters is not None:
        _check_schema(parameters, f"{where}.parameters")
        if parameters.get("type", "object") != "object":
            raise InvalidRequest(
                f"{where}.parameters must have type 'object' (function arguments are a JSON object)",
                param=f"{where}.parameters",
            )
    return Tool(name=name, description=str(description or ""), parameters=parameters)


def chat_tools(tools: list[Any] | None) -> list[Tool]:
    """Chat Completions `tools`: [{"type": "function", "function": {name, description, parameters}}]."""
    out = []
    for i, t in enumerate(tools or []):
        where = f"tools[{i}]"
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            raise InvalidRequest(
                f"{where} must be {{'type': 'function', 'function': {{...}}}}; only function tools exist", param=where
            )
        fn = t["function"]
        out.append(tool_of(fn.get("name"), fn.get("description"), fn.get("parameters"), f"{where}.function"))
    _unique(out)
    return out


def response_tools(tools: list[Any] | None) -> list[Tool]:
    """Responses `tools`: [{"type": "function", "name", "description", "parameters"}] (flat)."""
    out = []
    for i, t in enumerate(tools or []):
        where = f"tools[{i}]"
        kind = t.get("type") if isinstance(t, dict) else None
        if kind != "function":
            raise InvalidRequest(f"{where} has type {kind!r}; this server supports function tools", param=where)
        out.append(tool_of(t.get("name"), t.get("description"), t.get("parameters"), where))
    _unique(out)
    return out


def _unique(tools: list[Tool]) -> None:
    names = [t.name for t in tools]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise InvalidRequest(f"tool names must be unique; repeated: {', '.join(dupes)}", param="tools")


def tool_choice_of(choice: Any, tools: list[Tool], nested: bool) -> tuple[ToolChoice, str | None]:
    """(mode, forced function name). `nested`: chat's {"function": {"name"}} vs responses' {"name"}."""
    if choice is None:
        return "auto", None
    if choice in ("auto", "none", "required"):
        if choice == "required" and not tools:
            raise InvalidRequest("tool_choice is 'required' but no tools were given", param="tool_choice")
        return choice, None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name") if nested else choice.get("name")
        if name not in {t.name for t in tools}:
            raise InvalidRequest(f"tool_choice names function {name!r}, which is not in tools", param="tool_choice")
        return "required", name
    raise InvalidRequest(
        "tool_choice must be 'auto', 'none', 'required' or {'type': 'function', ...}", param="tool_choice"
    )


def response_format_of(fmt: Any, param: str, nested: bool) -> ResponseFormat | None:
    """What the final answer must be, from `response_format` (chat; `nested`: the schema sits under
    "json_schema") or `text.format` (responses): None for plain text."""
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object", {"type": "object"})
    if kind == "json_schema":
        spec = fmt.get("json_schema") if nested else fmt
        spec = spec if isinstance(spec, dict) else {}
        where = f"{param}.json_schema" if nested else param
        name, schema, description = spec.get("name"), spec.get("schema"), spec.get("description") or ""
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):  # it is written into the prompt, too
            raise InvalidRequest(
                f"{where}.name must be 1-64 letters, digits, _ or -; got {name!r}", param=f"{where}.name"
            )
        if schema is None:
            raise InvalidRequest(f"{where}.schema is required for type 'json_schema'", param=f"{where}.schema")
        if not isinstance(description, str):
            raise InvalidRequest(f"{where}.description must be a string", param=f"{where}.description")
        _check_schema(schema, f"{where}.schema")
        structured.check_schema(schema, f"{where}.schema")
        return ResponseFormat(name, schema, description)
    raise InvalidRequest(f"{param}.type must be 'text', 'json_object' or 'json_schema'; got {kind!r}", param=param)


def chat_messages(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """Chat Completions `messages` -> ChatMessages."""
    if not messages:
        raise InvalidRequest("messages must contain at least one message", param="messages")
    out: list[ChatMessage] = []
    call_names: dict[str, str] = {}  # tool_call_id -> function name
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = m.get("role")
        if role not in ROLES:
            raise InvalidRequest(
                f"{where}.role {role!r} is unknown; use one of {', '.join(ROLES)}", param=f"{where}.role"
            )
        content = text_of(m.get("content"), f"{where}.content")
        if role == "assistant":
            calls = []
            for j, c in enumerate(m.get("tool_calls") or []):
                fn = c.get("function") or {}
                if not fn.get("name"):
                    raise InvalidRequest(
                        f"{where}.tool_calls[{j}].function.name is missing", param=f"{where}.tool_calls"
                    )
                args = fn.get("arguments") or "{}"
                calls.append(ToolCall(name=fn["name"], arguments=args, id=c.get("id") or ""))
                if c.get("id"):
                    call_names[c["id"]] = fn["name"]
            reasoning = m.get("reasoning") or m.get("reasoning_content")
            out.append(ChatMessage("assistant", content, reasoning=reasoning, tool_calls=calls))
        elif role == "tool":
            call_id = m.get("tool_call_id")
            name = call_names.get(call_id) if call_id else None
            name = name or m.get("name")
            if not name:
                raise InvalidRequest(
                    f"{where}: tool_call_id {call_id!r} does not match any earlier assistant tool call",
                    param=f"{where}.tool_call_id",
                )
            out.append(ChatMessage("tool", content, name=name))
        else:
            out.append(ChatMessage(role, content))
    return out


def response_items(items: list[dict[str, Any]], param: str = "input") -> list[ChatMessage]:
    """Responses input items (messages, reasoning, function_call, function_call_output) -> ChatMessages.

    Consecutive assistant-side items (reasoning, function calls, an assistant message) form one
    assistant turn, as harmony renders them.
    """
    out: list[ChatMessage] = []
    call_names: dict[str, str] = {}
    turn: ChatMessage | None = None

    def flush() -> None:
        nonlocal turn
        if turn is not None:
            out.append(turn)
            turn = None

    for i, item in enumerate(items):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("system", "developer", "user", "assistant"):
                raise InvalidRequest(
                    f"{where}.role {role!r} is unknown; use system, developer, user or assistant", param=f"{where}.role"
                )
            text = text_of(item.get("content"), f"{where}.content")
            if role == "assistant":
                if turn is None or turn.content:
                    flush()
                    turn = ChatMessage("assistant")
                turn.content = text
                flush()
            else:
                flush()
                out.append(ChatMessage(role, text))
        elif kind == "reasoning":
            flush()
            text = text_of(item.get("content"), f"{where}.content") or text_of(item.get("summary"), f"{where}.summary")
            turn = ChatMessage("assistant", reasoning=text)
        elif kind == "function_call":
            if not item.get("name") or not item.get("call_id"):
                raise InvalidRequest(f"{where} (function_call) needs name and call_id", param=where)
            if turn is None:
                turn = ChatMessage("assistant")
            turn.tool_calls.append(ToolCall(item["name"], item.get("arguments") or "{}", item["call_id"]))
            call_names[item["call_id"]] = item["name"]
        elif kind == "function_call_output":
            flush()
            name = call_names.get(item.get("call_id"))
            if name is None:
                raise InvalidRequest(
                    f"{where}: call_id {item.get('call_id')!r} does not match any earlier function_call "
                    "(send the function_call item too, or use previous_response_id)",
                    param=f"{where}.call_id",
                )
            output = item.get("output")
            out.append(
                ChatMessage(
                    "tool", output if isinstance(output, str) else text_of(output, f"{where}.output"), name=name
                )
            )
        else:
            raise InvalidRequest(
                f"{where} has type {kind!r}; expected message, reasoning, function_call or function_call_output",
                param=where,
            )
    flush()
    return out
