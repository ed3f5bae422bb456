#!/usr/bin/env python3
"""A small MCP server for the real-peer tests, built with whichever SDK the running Python has:
the MCP SDK 2.x `MCPServer` (e2e/.venv-mcp2) or fastmcp 3.x on the SDK 1.x (e2e/.venv-mcp1,
what Conduit runs on).

usage: server.py --port P [--stateless | --transport sse]

Tools: `echo(text)`; `count(steps)`, which reports progress once per step before it answers,
so its reply is an event stream of several events; and `secret()`, for tests whose policy denies
a tool (it answers like any other here). On 127.0.0.1, over Streamable HTTP at /mcp (the
default, `--transport http`), or over the deprecated HTTP+SSE transport of 2024-11-05
(`--transport sse`: `GET /sse`, then POSTs to the `/messages/?session_id=…` it announces),
the same tools either way: with it a test sees what a legacy client sees straight from the SDK.

`GET /sessions` (outside MCP) answers `{"open": N, "legacy": M}`: the Streamable HTTP sessions
the SDK's session manager holds open (a DELETE, or an idle timeout, ends one), so a test can see
a client leave none, and the HTTP+SSE sessions whose stream is open (`--transport sse` only).
"""

import argparse
import asyncio

from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.responses import JSONResponse

try:
    from mcp.server.mcpserver import Context, MCPServer as Server

    SDK = 2
except ImportError:
    from fastmcp import Context, FastMCP as Server

    SDK = 1

# Every session manager the SDK makes (fastmcp's is a subclass), for `GET /sessions`.
MANAGERS = []
_manager_init = StreamableHTTPSessionManager.__init__


def _recording_init(self, *args, **kwargs):
    _manager_init(self, *args, **kwargs)
    MANAGERS.append(self)


StreamableHTTPSessionManager.__init__ = _recording_init

# Every legacy SSE transport (one per app), for the `legacy` count of `GET /sessions`.
SSE_TRANSPORTS = []
_sse_init = SseServerTransport.__init__


def _recording_sse_init(self, *args, **kwargs):
    _sse_init(self, *args, **kwargs)
    SSE_TRANSPORTS.append(self)


SseServerTransport.__init__ = _recording_sse_init


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stateless", action="store_true", help="no sessions (Streamable HTTP)")
    parser.add_argument("--transport", choices=["http", "sse"], default="http")
    args = parser.parse_args()
    if args.stateless and args.transport == "sse":
        parser.error("--stateless is for Streamable HTTP: HTTP+SSE always has sessions")

    mcp = Server(f"sluice-peer-sdk{SDK}")

    @mcp.tool()
    def echo(text: str) -> str:
        """Returns its argument."""
        return f"echo: {text}"

    @mcp.tool()
    async def count(steps: int, ctx: Context) -> str:
        """Reports progress once per step, then answers."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps)
            await asyncio.sleep(0.02)
        return f"counted to {steps}"

    @mcp.tool()
    def secret() -> str:
        """A tool a test's policy denies."""
        return "the secret"

    @mcp.custom_route("/sessions", methods=["GET"])
    async def sessions(request):
        # The SDK's own bookkeeping of open sessions (a private attribute: a test peer only).
        return JSONResponse(
            {
                "open": sum(len(m._server_instances) for m in MANAGERS),
                "legacy": sum(len(t._read_stream_writers) for t in SSE_TRANSPORTS),
            }
        )

    if args.transport == "sse":
        # Both SDK lines serve `GET /sse` and `POST /messages/` by default.
        if SDK == 2:
            mcp.run("sse", host="127.0.0.1", port=args.port)
        else:
            mcp.run(transport="sse", host="127.0.0.1", port=args.port, show_banner=False)
    elif SDK == 2:
        mcp.run(
            "streamable-http",
            host="127.0.0.1",
            port=args.port,
            streamable_http_path="/mcp",
            stateless_http=args.stateless,
        )
    else:
        mcp.run(
            transport="http",
            host="127.0.0.1",
            port=args.port,
            path="/mcp",
            stateless_http=args.stateless,
            show_banner=False,
        )


if __name__ == "__main__":
    main()
