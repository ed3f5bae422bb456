#!/usr/bin/env python3
"""An MCP client (the Python MCP SDK 1.x, run it with the Python of e2e/.venv-mcp1) for the
tracing tests: it sends the given headers, e.g. a W3C `traceparent`, on every HTTP request.

usage: client.py --url URL/mcp [--header K=V]...

Initializes, lists the tools and calls `echo` with "hi", then prints one JSON object on stdout:
  {"tools": [names], "echo": "<text of the result>", "protocol": "<negotiated protocol version>"}
"""

import argparse
import asyncio
import json

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def run(url, headers):
    # trust_env=False: loopback peers, never through an HTTP_PROXY from the environment.
    http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=300), trust_env=False)
    async with http, streamable_http_client(url, http_client=http) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = [t.name for t in (await session.list_tools()).tools]
            result = await session.call_tool("echo", {"text": "hi"})
            text = "".join(c.text for c in result.content if getattr(c, "text", None) is not None)
            return {"tools": tools, "echo": text, "protocol": init.protocolVersion}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[], metavar="K=V")
    args = parser.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    print(json.dumps(asyncio.run(run(args.url, headers))), flush=True)


if __name__ == "__main__":
    main()
