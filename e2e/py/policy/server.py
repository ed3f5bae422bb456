#!/usr/bin/env python3
"""An MCP server with three Conduit-like tools, for the tool-policy and rate-limit tests, built with
whichever SDK the running Python has: the MCP SDK 2.x `MCPServer` (e2e/.venv-mcp2) or fastmcp 3.x
on the SDK 1.x (e2e/.venv-mcp1, what Conduit runs on).

usage: server.py --port P [--json]

Tools: `pha_task_get(task_id)`, `pha_user_whoami()` (Conduit's `{"success": true, "user": {...}}`,
always alice) and `pha_passphrase_get(passphrase_id)` (the one a policy hides). Streamable HTTP at /mcp on 127.0.0.1, stateless; replies are event streams,
or JSON with --json.
"""

import argparse

try:
    from mcp.server.mcpserver import MCPServer as Server

    SDK = 2
except ImportError:  # e2e/.venv-mcp1: fastmcp on the SDK 1.x, what Conduit runs on
    from fastmcp import FastMCP as Server

    SDK = 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="answer with JSON instead of SSE")
    args = parser.parse_args()

    mcp = Server("conduit-like")

    @mcp.tool()
    def pha_task_get(task_id: int) -> str:
        """Reads a Maniphest task."""
        return f"T{task_id}: fix the build"

    @mcp.tool()
    def pha_user_whoami() -> dict:
        """Who the token belongs to, in Conduit's result shape (the sidecar reads it in OAuth
        mode). Unlike Conduit it names alice whoever calls: it checks no token."""
        return {"success": True, "user": {"phid": "PHID-USER-alice", "userName": "alice"}}

    @mcp.tool()
    def pha_passphrase_get(passphrase_id: int) -> str:
        """Reads a Passphrase credential."""
        return f"K{passphrase_id}: hunter2"

    if SDK == 2:
        mcp.run(
            "streamable-http",
            host="127.0.0.1",
            port=args.port,
            streamable_http_path="/mcp",
            stateless_http=True,
            json_response=args.json,
        )
    else:
        mcp.run(transport="http", host="127.0.0.1", port=args.port, path="/mcp",
                stateless_http=True, json_response=args.json, show_banner=False)


if __name__ == "__main__":
    main()
