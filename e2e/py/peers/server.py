#!/usr/bin/env python3
"""A small MCP server for the real-peer tests, built with whichever SDK the running Python has:
the MCP SDK 2.x `MCPServer` (e2e/.venv-mcp2) or fastmcp 3.x on the SDK 1.x (e2e/.venv-mcp1,
what Conduit runs on).

usage: server.py --port P [--stateless]

Tools: `echo(text)` and `count(steps)`, which reports progress once per step before it answers,
so its reply is an event stream of several events. Streamable HTTP at /mcp on 127.0.0.1.
"""

import argparse
import asyncio

try:
    from mcp.server.mcpserver import Context, MCPServer as Server

    SDK = 2
except ImportError:
    from fastmcp import Context, FastMCP as Server

    SDK = 1


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
