#!/usr/bin/env python3
"""Drives an MCP server over the deprecated HTTP+SSE transport (2024-11-05) with the SDK's own
legacy client, `mcp.client.sse.sse_client`, and reports what a user of the SDK sees plus what
went over the wire, so a run through the sidecar can be compared with a run straight against a
server that speaks the transport itself (`e2e/py/peers/server.py --transport sse`).

Runs with either SDK line, whichever the running Python has: e2e/.venv-mcp1 (mcp 1.x, httpx,
`ClientSession`: what Conduit's users run today) or e2e/.venv-mcp2 (mcp 2.x still ships
`mcp.client.sse.sse_client`, on httpx2, driven through `mcp.Client(transport, mode="legacy")`).

usage: client.py --url URL/sse [--header 'K: V']... --call NAME:JSON --denied NAME:JSON
                 --stream NAME:JSON

Opens the event stream (GET URL), initializes, lists the tools, calls `--call`, calls `--denied`
(a tool the sidecar's policy refuses: the SDK raises on the JSON-RPC error), calls `--stream`
with a progress callback, disconnects, then POSTs a ping to the session's endpoint until it is
refused (at most 10 s: the server learns of the disconnect when the stream's connection closes).

Prints one JSON report on stdout:
  {"sdk": 1 | 2, "protocol_version", "server_name", "server_version", "tools": [names],
   "call" | "denied": {"ok": true, "is_error", "text"} | {"ok": false, "type", "error", "code"?},
   "stream": {... as "call", "progress": [[progress, total]...]},
   "endpoint": the URL the client POSTs to (the `endpoint` event's, resolved against URL),
   "get": {"status", "type"}, "posts": [{"rpc", "id", "status"}...] (in order),
   "after_close": {"status", "body"} | null}
or, when the SDK could not connect, {"connect_error": {"type", "error"}, ...what went over the wire}.
Exit status 0 when the report was written (errors are data here); everything is bounded in time.
"""

import argparse
import asyncio
import json
from contextlib import AsyncExitStack
from datetime import timedelta

import anyio
from mcp.client.sse import sse_client

try:
    import httpx2 as httpx
    from mcp import Client

    SDK = 2
except ImportError:
    import httpx
    from mcp import ClientSession

    SDK = 1

# How long a disconnected session may stay reachable before the report says it did.
AFTER_CLOSE_PATIENCE = 10.0


def content_text(result):
    return "\n".join(c.text for c in result.content if getattr(c, "text", None) is not None)


def is_error(result):
    # 1.x names the field `isError`, 2.x `is_error`.
    return bool(getattr(result, "is_error", getattr(result, "isError", False)))


def describe(exc):
    """What the SDK raised, with the first cause inside an exception group; for JSON-RPC
    errors (McpError in 1.x, MCPError in 2.x) the code too."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    out = {"ok": False, "type": type(exc).__name__, "error": str(exc)}
    code = getattr(getattr(exc, "error", None), "code", None)
    if code is not None:
        out["code"] = code
    return out


def spec(value):
    name, _, arguments = value.partition(":")
    return name, json.loads(arguments) if arguments else {}


class Wire:
    """Records the transport's HTTP exchanges (httpx event hooks on the SDK's own client)."""

    def __init__(self):
        self.get = None
        self.posts = []
        self.endpoint = None

    async def on_response(self, response):
        request = response.request
        if request.method == "GET":
            content_type = response.headers.get("content-type", "").split(";")[0] or None
            self.get = {"status": response.status_code, "type": content_type}
            return
        self.endpoint = self.endpoint or str(request.url)
        try:
            message = json.loads(request.content)
        except ValueError:
            message = {}
        rpc = message.get("method") or ("response" if "result" in message or "error" in message else None)
        self.posts.append({"rpc": rpc, "id": message.get("id"), "status": response.status_code})

    def client_factory(self, headers=None, timeout=None, auth=None):
        """The SDK's `httpx_client_factory`: its default client, plus the hooks, minus any
        proxy from the environment."""
        return httpx.AsyncClient(
            headers=headers,
            timeout=timeout,
            auth=auth,
            trust_env=False,
            event_hooks={"response": [self.on_response]},
        )


async def connect(stack, transport, timeout):
    """Enters the SDK's client on `transport` and initializes: (client, protocol version,
    server info). Every request (initialize included) gives up after `timeout`."""
    if SDK == 2:
        client = await stack.enter_async_context(
            Client(transport, mode="legacy", read_timeout_seconds=timeout)
        )
        return client, client.protocol_version, client.server_info
    read, write = await stack.enter_async_context(transport)
    client = await stack.enter_async_context(
        ClientSession(read, write, read_timeout_seconds=timedelta(seconds=timeout))
    )
    initialized = await client.initialize()
    return client, initialized.protocolVersion, initialized.serverInfo


async def call(client, value, progress=None):
    """One tool call as the report records it (a refusal that never arrives: the SDK's timeout)."""
    name, arguments = spec(value)
    try:
        result = await client.call_tool(name, arguments, progress_callback=progress)
        return {"ok": True, "is_error": is_error(result), "text": content_text(result)}
    except Exception as exc:  # noqa: BLE001 - what the user sees is the report
        return describe(exc)


async def after_close(endpoint, headers, timeout):
    """The status (and body) a POST to the ended session gets once the server noticed the
    disconnect; 2xx for AFTER_CLOSE_PATIENCE seconds means it never did."""
    ping = {"jsonrpc": "2.0", "id": 99, "method": "ping"}
    async with httpx.AsyncClient(headers=headers, timeout=timeout, trust_env=False) as http:
        deadline = anyio.current_time() + AFTER_CLOSE_PATIENCE
        while True:
            response = await http.post(endpoint, json=ping)
            if response.status_code >= 300 or anyio.current_time() > deadline:
                try:
                    body = response.json()
                except ValueError:
                    body = response.text
                return {"status": response.status_code, "body": body}
            await anyio.sleep(0.1)


async def run(args):
    headers = dict(h.split(": ", 1) for h in args.header)
    wire = Wire()
    report = {"sdk": SDK}
    transport = sse_client(
        args.url,
        headers=headers,
        timeout=args.timeout,
        sse_read_timeout=args.timeout * 3,
        httpx_client_factory=wire.client_factory,
    )
    try:
        async with AsyncExitStack() as stack:
            client, version, info = await connect(stack, transport, args.timeout)
            report["protocol_version"] = version
            report["server_name"] = info.name if info else None
            report["server_version"] = info.version if info else None
            report["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
            report["call"] = await call(client, args.call)
            report["denied"] = await call(client, args.denied)
            progress = []

            async def on_progress(value, total, message):
                progress.append([value, total])

            report["stream"] = await call(client, args.stream, on_progress)
            report["stream"]["progress"] = progress
    except Exception as exc:  # noqa: BLE001 - what the user sees is the report
        report["connect_error"] = describe(exc)
    report["endpoint"] = wire.endpoint
    report["get"] = wire.get
    report["posts"] = wire.posts
    report["after_close"] = None
    if wire.endpoint and "connect_error" not in report:
        report["after_close"] = await after_close(wire.endpoint, headers, args.timeout)
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the event stream's URL (…/sse)")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--call", required=True)
    parser.add_argument("--denied", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--timeout", type=float, default=20)
    args = parser.parse_args()
    report = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout * 5))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
