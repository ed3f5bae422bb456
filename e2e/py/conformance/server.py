#!/usr/bin/env python3
"""The fixture MCP server for the MCP conformance suite's server scenarios
(`@modelcontextprotocol/conformance`, `server --suite all`), built on the Python MCP SDK 2.x
low-level `Server` (run it with the Python of e2e/.venv-mcp2).

usage: server.py --port P | --stdio

Implements every tool, resource, prompt and utility the suite's server scenarios call, with the
content each scenario's description asks for: the `test_*` tools (text, image, audio, embedded
resource, mixed content, logging, error, progress, sampling, elicitation with SEP-1034 defaults
and SEP-1330 enums, SSE polling), `json_schema_2020_12_tool`, the `test://` resources and
template, the `test_*` prompts, `logging/setLevel`, `completion/complete` and
`resources/(un)subscribe`.

Why the low-level `Server` and not `MCPServer`: two scenarios check exact wire shapes that
`MCPServer` derives itself — `json-schema-2020-12` wants an input schema carrying `$schema`,
`$defs` and `additionalProperties: false` verbatim, `elicitation-sep1330-enums` wants
`oneOf`/`anyOf`/`enumNames` schemas a pydantic model does not render — and `logging/setLevel`
and `resources/subscribe` have no `MCPServer` API.

Streamable HTTP at /mcp on 127.0.0.1 (with the SDK's DNS-rebinding protection for loopback),
sessions, an in-memory event store and a 100 ms retry hint, so SSE streams are resumable.

With `--stdio` it is a stdio server instead (for the bridge's tests): the same handlers, no event
store, and the lines below go to stderr, since stdout carries the messages.

Every request one of these handlers serves is printed on stdout as one JSON line,
`{"served": METHOD, "name": NAME}` (NAME: the tool, prompt or resource URI; absent for the
rest), plus `"answered": true|false` for tools that ask the client something back. A scenario
that "passes" on an error reply leaves no such line: the test checks these lines, not only the
suite's verdict.
"""

import argparse
import asyncio
import base64
import json
import struct
import sys
import warnings
import zlib

import anyio
import mcp.types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# Logging and sampling are deprecated by 2026-07-28 but are part of 2025-11-25, which the suite
# speaks; the scenarios test them.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)


def png_pixel():
    """A valid 1x1 red PNG."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then red
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def wav_sample():
    """A valid WAV holding one silent 16-bit mono sample at 8 kHz."""
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    data = b"\x00\x00"
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


PNG = base64.b64encode(png_pixel()).decode()
WAV = base64.b64encode(wav_sample()).decode()

NO_ARGUMENTS = {"type": "object", "properties": {}}


# Where `served` lines go: stdout, or stderr when stdout carries the messages (`--stdio`).
SERVED_TO = sys.stdout


def served(method, name=None, **extra):
    """Records that a handler of this fixture answered `method` (for `name`)."""
    line = {"served": method}
    if name is not None:
        line["name"] = name
    line.update(extra)
    print(json.dumps(line), file=SERVED_TO, flush=True)


def text(value):
    return types.TextContent(type="text", text=value)


def image():
    return types.ImageContent(type="image", data=PNG, mime_type="image/png")


def embedded(uri, mime_type, value):
    return types.EmbeddedResource(
        type="resource",
        resource=types.TextResourceContents(uri=uri, mime_type=mime_type, text=value),
    )


class MemoryEventStore(EventStore):
    """Every SSE event of the process, for replay after a `Last-Event-ID` reconnection."""

    def __init__(self):
        self.events = []  # (stream id, event id, message or None for a priming event)

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback: EventCallback):
        stream = next((s for s, e, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        for stream_id, event_id, message in self.events:
            if stream_id == stream and int(event_id) > int(last_event_id) and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


# === Tools ===

TOOLS = {}


def tool(name, description, input_schema=None):
    def register(handler):
        TOOLS[name] = (
            types.Tool(name=name, description=description, input_schema=input_schema or NO_ARGUMENTS),
            handler,
        )
        return handler

    return register


def result(*content, is_error=False):
    return types.CallToolResult(content=list(content), is_error=is_error)


async def log(ctx, message):
    await ctx.session.send_log_message("info", message, related_request_id=ctx.request_id)


@tool("test_simple_text", "Returns one text item.")
async def simple_text(ctx, arguments):
    return result(text("This is a simple text response for testing."))


@tool("test_image_content", "Returns one PNG image.")
async def image_content(ctx, arguments):
    return result(image())


@tool("test_audio_content", "Returns one WAV clip.")
async def audio_content(ctx, arguments):
    return result(types.AudioContent(type="audio", data=WAV, mime_type="audio/wav"))


@tool("test_embedded_resource", "Returns one embedded text resource.")
async def embedded_resource(ctx, arguments):
    return result(embedded("test://embedded-resource", "text/plain", "This is an embedded resource content."))


@tool("test_multiple_content_types", "Returns text, an image and an embedded resource.")
async def multiple_content_types(ctx, arguments):
    return result(
        text("Multiple content types test:"),
        image(),
        embedded("test://mixed-content-resource", "application/json", '{"test":"data","value":123}'),
    )


@tool("test_tool_with_logging", "Sends three log messages while it runs.")
async def tool_with_logging(ctx, arguments):
    await log(ctx, "Tool execution started")
    await asyncio.sleep(0.05)
    await log(ctx, "Tool processing data")
    await asyncio.sleep(0.05)
    await log(ctx, "Tool execution completed")
    return result(text("Tool with logging executed successfully"))


@tool("test_error_handling", "Always fails with isError.")
async def error_handling(ctx, arguments):
    return result(text("This tool intentionally returns an error for testing"), is_error=True)


@tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100.")
async def tool_with_progress(ctx, arguments):
    for step in (0, 50, 100):
        await ctx.session.report_progress(step, 100, f"Completed step {step} of 100")
        if step < 100:
            await asyncio.sleep(0.05)
    return result(text("Tool with progress executed successfully"))


@tool(
    "test_sampling",
    "Asks the client's LLM to complete a prompt.",
    {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
)
async def sampling(ctx, arguments):
    reply = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=text(str(arguments["prompt"])))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = reply.content
    answer = content.text if getattr(content, "type", None) == "text" else "a non-text reply"
    return result(text(f"LLM response: {answer}"))


async def elicit(ctx, message, schema):
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


def elicited(reply, prefix):
    return result(text(f"{prefix}: action={reply.action}, content={json.dumps(reply.content or {})}"))


@tool(
    "test_elicitation",
    "Asks the user for a username and an email address.",
    {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
)
async def elicitation(ctx, arguments):
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"},
        },
        "required": ["username", "email"],
    }
    return elicited(await elicit(ctx, str(arguments["message"]), schema), "User response")


@tool("test_elicitation_sep1034_defaults", "Elicits every primitive type with a default (SEP-1034).")
async def elicitation_defaults(ctx, arguments):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
    }
    return elicited(await elicit(ctx, "Please provide user information", schema), "Elicitation completed")


@tool("test_elicitation_sep1330_enums", "Elicits the five enum schema variants (SEP-1330).")
async def elicitation_enums(ctx, arguments):
    def titled(*pairs):
        return [{"const": value, "title": title} for value, title in pairs]

    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {
                "type": "string",
                "oneOf": titled(("value1", "First Option"), ("value2", "Second Option"), ("value3", "Third Option")),
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {
                "type": "array",
                "items": {
                    "anyOf": titled(("value1", "First Choice"), ("value2", "Second Choice"), ("value3", "Third Choice"))
                },
            },
        },
    }
    return elicited(await elicit(ctx, "Please choose", schema), "Elicitation completed")


@tool(
    "json_schema_2020_12_tool",
    "Tool with JSON Schema 2020-12 features",
    {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    },
)
async def json_schema_2020_12(ctx, arguments):
    return result(text(f"Received: {json.dumps(arguments)}"))


@tool("test_reconnection", "Closes its SSE stream mid-call; the result waits for the reconnection (SEP-1699).")
async def reconnection(ctx, arguments):
    # The SDK offers `close_sse_stream` (and sends priming events) only to clients of 2025-11-25
    # or later; conformance 0.1.16 posts this call with `mcp-protocol-version: 2025-03-26`, so the
    # stream stays open and the scenario ends with two warnings (no priming event, no retry
    # field), directly as through the sidecar.
    await log(ctx, "Before disconnect")
    if ctx.close_sse_stream is not None:
        await ctx.close_sse_stream()
    await asyncio.sleep(0.2)
    await log(ctx, "After reconnect")
    return result(text("Reconnection test completed"))


# Tools that ask the client something: whether it answered is recorded.
ASKS_THE_CLIENT = {"test_sampling", "test_elicitation", "test_elicitation_sep1034_defaults",
                   "test_elicitation_sep1330_enums"}


async def list_tools(ctx, params):
    served("tools/list")
    return types.ListToolsResult(tools=[definition for definition, _ in TOOLS.values()])


async def call_tool(ctx, params):
    entry = TOOLS.get(params.name)
    if entry is None:
        return result(text(f"Unknown tool: {params.name}"), is_error=True)
    _, handler = entry
    try:
        reply = await handler(ctx, params.arguments or {})
    except MCPError:
        if params.name in ASKS_THE_CLIENT:
            served("tools/call", params.name, answered=False)
        raise
    extra = {"answered": True} if params.name in ASKS_THE_CLIENT else {}
    served("tools/call", params.name, **extra)
    return reply


# === Resources ===

STATIC_RESOURCES = {
    "test://static-text": ("Static text", "text/plain", "This is the content of the static text resource."),
    "test://static-binary": ("Static binary", "image/png", None),
    "test://watched-resource": ("Watched resource", "text/plain", "Watched resource content"),
}
TEMPLATE = "test://template/{id}/data"
SUBSCRIPTIONS = set()


async def list_resources(ctx, params):
    served("resources/list")
    return types.ListResourcesResult(
        resources=[
            types.Resource(uri=uri, name=name, description=f"{name} resource for testing", mime_type=mime)
            for uri, (name, mime, _) in STATIC_RESOURCES.items()
        ]
    )


async def list_resource_templates(ctx, params):
    served("resources/templates/list")
    return types.ListResourceTemplatesResult(
        resource_templates=[
            types.ResourceTemplate(
                uri_template=TEMPLATE,
                name="Template data",
                description="Data for one id",
                mime_type="application/json",
            )
        ]
    )


def template_id(uri):
    prefix, suffix = "test://template/", "/data"
    if uri.startswith(prefix) and uri.endswith(suffix) and len(uri) > len(prefix) + len(suffix):
        ident = uri[len(prefix) : -len(suffix)]
        return ident if "/" not in ident else None
    return None


async def read_resource(ctx, params):
    uri = str(params.uri)
    if uri in STATIC_RESOURCES:
        _, mime, content = STATIC_RESOURCES[uri]
        if content is None:
            contents = types.BlobResourceContents(uri=uri, mime_type=mime, blob=PNG)
        else:
            contents = types.TextResourceContents(uri=uri, mime_type=mime, text=content)
    elif (ident := template_id(uri)) is not None:
        data = json.dumps({"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"})
        contents = types.TextResourceContents(uri=uri, mime_type="application/json", text=data)
    else:
        raise MCPError(code=-32002, message=f"Resource not found: {uri}")
    served("resources/read", uri)
    return types.ReadResourceResult(contents=[contents])


async def subscribe(ctx, params):
    SUBSCRIPTIONS.add(str(params.uri))
    served("resources/subscribe", str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx, params):
    SUBSCRIPTIONS.discard(str(params.uri))
    served("resources/unsubscribe", str(params.uri))
    return types.EmptyResult()


# === Prompts ===


def argument(name, description):
    return types.PromptArgument(name=name, description=description, required=True)


PROMPTS = {
    "test_simple_prompt": ("A prompt without arguments", []),
    "test_prompt_with_arguments": (
        "A prompt with two required arguments",
        [argument("arg1", "First test argument"), argument("arg2", "Second test argument")],
    ),
    "test_prompt_with_embedded_resource": (
        "A prompt embedding a resource",
        [argument("resourceUri", "URI of the resource to embed")],
    ),
    "test_prompt_with_image": ("A prompt with an image", []),
}


def user(content):
    return types.PromptMessage(role="user", content=content)


async def list_prompts(ctx, params):
    served("prompts/list")
    return types.ListPromptsResult(
        prompts=[
            types.Prompt(name=name, description=description, arguments=arguments)
            for name, (description, arguments) in PROMPTS.items()
        ]
    )


async def get_prompt(ctx, params):
    name, args = params.name, params.arguments or {}
    if name not in PROMPTS:
        raise MCPError(code=-32602, message=f"Unknown prompt: {name}")
    missing = [a.name for a in PROMPTS[name][1] if a.name not in args]
    if missing:
        raise MCPError(code=-32602, message=f"Missing arguments: {', '.join(missing)}")
    if name == "test_simple_prompt":
        messages = [user(text("This is a simple prompt for testing."))]
    elif name == "test_prompt_with_arguments":
        messages = [user(text(f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"))]
    elif name == "test_prompt_with_embedded_resource":
        messages = [
            user(embedded(args["resourceUri"], "text/plain", "Embedded resource content for testing.")),
            user(text("Please process the embedded resource above.")),
        ]
    else:
        messages = [user(image()), user(text("Please analyze the image above."))]
    served("prompts/get", name)
    return types.GetPromptResult(messages=messages)


# === Utilities ===


async def set_logging_level(ctx, params):
    served("logging/setLevel", params.level)
    return types.EmptyResult()


async def complete(ctx, params):
    served("completion/complete", getattr(params.ref, "name", None) or getattr(params.ref, "uri", None))
    return types.CompleteResult(completion=types.Completion(values=[], total=0, has_more=False))


def build():
    return Server(
        "sluice-conformance-fixture",
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_logging_level,
    )


async def serve_stdio(server):
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main():
    parser = argparse.ArgumentParser()
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int)
    mode.add_argument("--stdio", action="store_true")
    args = parser.parse_args()
    if args.stdio:
        global SERVED_TO
        SERVED_TO = sys.stderr
        server = build()
        anyio.run(serve_stdio, server)
        return 0
    app = build().streamable_http_app(
        streamable_http_path="/mcp",
        event_store=MemoryEventStore(),
        retry_interval=100,
        host="127.0.0.1",
    )
    print(json.dumps({"listening": f"http://127.0.0.1:{args.port}/mcp"}), flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
