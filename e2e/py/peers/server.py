#!/usr/bin/env python3
"""A small MCP server for the real-peer tests, built with whichever SDK the running Python has:
the MCP SDK 2.x `MCPServer` (e2e/.venv-mcp2) or fastmcp 3.x on the SDK 1.x (e2e/.venv-mcp1,
what Conduit runs on).

usage: server.py --port P [--stateless]

Tools: `echo(text)` and `count(steps)`, which reports progress once per step before it answers,
so its reply is an event stream of several events. Streamable HTTP at /mcp on 127.0.0.1.

`GET /sessions` (outside MCP) answers `{"open": N}`: the sessions the SDK's session manager
holds open (a DELETE, or an idle timeout, ends one), so a test can see a client leave none.
"""

import argparse
import asyncio

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stateless", action="store_true", help="no sessions")
    args = parser.parse_args()

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

    @mcp.custom_route("/sessions", methods=["GET"])
    async def sessions(request):
        # The SDK's own bookkeeping of open sessions (a private attribute: a test peer only).
        return JSONResponse({"open": sum(len(m._server_instances) for m in MANAGERS)})

    if SDK == 2:
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
