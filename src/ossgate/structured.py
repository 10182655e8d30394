"""Structured outputs for harmony: the grammar an assistant turn must follow, for llguidance.

A model that is free to write anything writes, now and then, a call to a function nobody declared or
arguments that are not JSON (gpt-oss-nano often does; large models sometimes do). OpenAI's strict
function calling and vLLM's structured outputs fix that by masking, at each step, the tokens that would
leave a grammar. The grammar here is the harmony turn itself: any number of analysis or commentary
messages, then either a final answer or a call `to=functions.NAME` of a *declared* NAME whose JSON
arguments match that tool's schema. Free text stays free; only the structure is enforced.

The grammar is Lark as llguidance reads it (`%json {…}` embeds a JSON schema, `<|…|>` is a special
token). The engine applies it (engine/constraint.py); here it is only built. Tool schemas it cannot compile
fall back to any JSON object; a response format's schema is checked where the request is read
(server/convert.py), so the grammar built from checked parts always compiles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import llguidance

from ossgate.errors import InvalidRequest
from ossgate.harmony import Tool

log = logging.getLogger(__name__)

ANY_OBJECT: dict[str, Any] = {"type": "object"}

# the message a turn may write before it ends; the recipient-in-header form is left out on purpose:
# ossgate renders (and the model is steered to) `<|channel|>commentary to=functions.NAME`
_MESSAGES = r"""
message: <|channel|> ("analysis" | "commentary") <|message|> TEXT <|end|> <|start|> "assistant"
TEXT: /(.|\n)*/
"""


# at most one space where JSON allows whitespace: both `{"a":1}` and json.dumps' `{"a": 1}` pass, but a model
# cannot fill the token budget with blank lines (llguidance's default allows any whitespace)
_LAYOUT = {"whitespace_pattern": " ?"}


def _json(schema: dict[str, Any]) -> str:
    return "%json " + json.dumps({"x-guidance": _LAYOUT} | schema, ensure_ascii=False)


def closed(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever an object lists its properties and says nothing else.

    JSON Schema lets an object carry properties it does not list; a function would reject them, so a call
    may only pass the declared parameters (what OpenAI's strict mode asks schema authors to write).
    """
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) if k in _SUBSCHEMAS else v for k, v in schema.items()}
    for k in ("properties", "$defs", "definitions"):
        if isinstance(schema.get(k), dict):
            out[k] = {name: closed(sub) for name, sub in schema[k].items()}
    if "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


_SUBSCHEMAS = {"items", "anyOf", "oneOf", "allOf", "not", "prefixItems", "if", "then", "else"}


def _arguments_schema(tool: Tool) -> dict[str, Any]:
    """The tool's parameters schema, or any JSON object where it has none or llguidance can't compile it.

    OpenAI only guarantees the schema under `strict`; a schema with a keyword the grammar compiler does not
    know still gets valid JSON rather than a refused request.
    """
    schema = closed(tool.parameters or ANY_OBJECT)
    if error := _error(f"start: {_json(schema)}"):
        log.warning("tool %s: schema not enforceable (%s); its arguments are only held to JSON", tool.name, error)
        return ANY_OBJECT
    return schema


def _call_rule(tools: Sequence[Tool]) -> str:
    # Harmony allows the recipient after the channel or before it, in the role section; openai-harmony
    # renders a call the second way (`<|start|>assistant to=functions.NAME<|channel|>commentary <|constrain|>json`),
    # so that is what a model trained on its renderings writes. With only the first way allowed, gpt-oss-nano
    # was pushed off its own form and answered instead of calling in 97 of 200 held-out cases.
    schemas = [(json.dumps(t.name), _json(_arguments_schema(t))) for t in tools]
    after_channel = " | ".join(f'{name} " " <|constrain|> "json" <|message|> {args}' for name, args in schemas)
    before_channel = " | ".join(
        f'{name} <|channel|> "commentary " <|constrain|> "json" <|message|> {args}' for name, args in schemas
    )
    return (
        f'call: <|channel|> "commentary to=functions." ({after_channel}) <|call|>\n'
        f'    | " to=functions." ({before_channel}) <|call|>'
    )


def turn_grammar(
    tools: Sequence[Tool] = (),
    *,
    require_call: bool = False,
    forced_tool: Tool | None = None,
    final_schema: dict[str, Any] | None = None,
) -> str | None:
    """The Lark grammar of one assistant turn (after `<|start|>assistant`), or None when nothing is enforced.

    - tools: a call must name one of them, with arguments that match its schema;
    - require_call: the turn must end with a call (`tool_choice: required`);
    - forced_tool: the call's header is already in the prompt; only its arguments are left to write;
    - final_schema: the final answer is JSON matching it (`response_format`).
    """
    if forced_tool is not None:
        return f"start: {_json(_arguments_schema(forced_tool))} <|call|>"
    if not tools and final_schema is None:
        return None
    final_body = _json(final_schema) if final_schema is not None else "TEXT"
    endings = ["call"] if require_call and tools else ["final"] + (["call"] if tools else [])
    rules = [
        f"start: message* ({' | '.join(endings)})",
        f'final: <|channel|> "final" <|message|> {final_body} <|return|>',
    ]
    if tools:
        rules.append(_call_rule(tools))
    return "\n".join(rules) + _MESSAGES


def _error(grammar: str) -> str:
    """Why the grammar does not compile, or "" (no tokenizer needed: the server process checks, the engine runs)."""
    return llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(grammar))


def check_schema(schema: dict[str, Any], param: str) -> None:
    """Raise InvalidRequest (a 400) when a response format's schema cannot be enforced (llguidance rejects it)."""
    if error := _error(f"start: {_json(schema)}"):
        raise InvalidRequest(f"the JSON schema cannot be enforced: {error.splitlines()[0]}", param=param)
