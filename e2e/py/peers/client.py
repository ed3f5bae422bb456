#!/usr/bin/env python3
"""Drives an MCP server with the Python MCP SDK 2.x client (run it with the Python of
e2e/.venv-mcp2) and reports what a user of the SDK sees, plus what went over the wire, so a run
through the sidecar can be compared with a run straight against the server.

usage: client.py (--url URL/mcp | --stdio '["COMMAND", "ARG"...]') --mode legacy|auto
                 [--header 'K: V']... --call NAME:JSON --stream NAME:JSON

With --stdio the client starts the server itself and speaks to it over stdin and stdout (the SDK's
stdio transport): the direct run a server behind sluice-bridge is compared with. Its report has
no wire and no after_close.

Connects (initialize, or server/discover in auto mode), lists the tools, calls `--call`, calls
`--stream` with a progress callback (the server answers it with an event stream), closes the
client (which DELETEs a session) and, when there was a session, POSTs once more with its id.

Prints one JSON report on stdout:
  {"protocol_version", "server_name", "server_version", "tools": [names], "call": {"is_error", "text"},
   "stream": {"is_error", "text", "progress": [[progress, total]...]},
   "wire": [{"method", "rpc", "status", "type", "session"}...],
   "after_close": status | null}
or {"connect_error": {"type", "error"}, "wire": [...]} when the SDK could not connect.
"""

import argparse
import asyncio
import json

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def content_text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "text", None) is not None)


def describe(exc):
    """What the SDK raised, with the first cause inside an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return {"type": type(exc).__name__, "error": str(exc)}


def spec(value):
    name, _, arguments = value.partition(":")
    return name, json.loads(arguments) if arguments else {}


async def run(args):
    headers = dict(h.split(": ", 1) for h in args.header)
    wire, session_ids = [], []

    async def on_response(response):
        request = response.request
        try:
            rpc = json.loads(request.content).get("method") if request.content else None
        except ValueError:
            rpc = "<not JSON>"
        session = response.headers.get("mcp-session-id")
        if session:
            session_ids.append(session)
        wire.append(
            {
                "method": request.method,
                "rpc": rpc,
                "status": response.status_code,
                "type": response.headers.get("content-type", "").split(";")[0] or None,
                "session": session is not None,
            }
        )

    http = httpx2.AsyncClient(
        headers=headers, timeout=args.timeout, trust_env=False, event_hooks={"response": [on_response]}
    )
    report = {}
    async with http:
        try:
            if args.stdio:
                command = json.loads(args.stdio)
                transport = stdio_client(StdioServerParameters(command=command[0], args=command[1:]))
            else:
                transport = streamable_http_client(args.url, http_client=http)
            async with Client(transport, mode=args.mode) as client:
                report["protocol_version"] = client.protocol_version
                report["server_name"] = client.server_info.name if client.server_info else None
                report["server_version"] = client.server_info.version if client.server_info else None
                report["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
                name, arguments = spec(args.call)
                result = await client.call_tool(name, arguments)
                report["call"] = {"is_error": bool(result.is_error), "text": content_text(result)}
                progress = []

                async def on_progress(value, total, message):
                    progress.append([value, total])

                name, arguments = spec(args.stream)
                result = await client.call_tool(name, arguments, progress_callback=on_progress)
                report["stream"] = {
                    "is_error": bool(result.is_error),
                    "text": content_text(result),
                    "progress": progress,
                }
        except Exception as exc:  # noqa: BLE001 - what the user sees is the report
            report["connect_error"] = describe(exc)
        report["after_close"] = None
        if session_ids and "connect_error" not in report:
            probe = {"jsonrpc": "2.0", "id": 99, "method": "tools/list", "params": {}}
            response = await http.post(
                args.url,
                json=probe,
                headers={
                    "accept": "application/json, text/event-stream",
                    "mcp-session-id": session_ids[-1],
                    "mcp-protocol-version": report["protocol_version"],
                },
            )
            report["after_close"] = response.status_code
    report["wire"] = wire
    return report


def main():
    parser = argparse.ArgumentParser()
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url")
    target.add_argument("--stdio")
    parser.add_argument("--mode", default="legacy")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--call", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()
    report = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout * 3))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
