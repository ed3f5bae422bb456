#!/usr/bin/env python3
"""A stdio MCP server on the Python MCP SDK 2.x `MCPServer` (run it with the Python of
e2e/.venv-mcp2), for the bridge's tests: well-behaved tools, and tools that make the process
misbehave the ways real stdio servers do.

usage: server.py   (with EXIT_MARKER=PATH: at a clean exit, after half a second, writes PATH)

Tools:
- `echo(text)`: answers `text`; `whoami()`: this process's pid (a restart shows as a new one);
  `count(steps)`: reports progress once per step, then answers.
- `crash(code)`: the process exits with `code` in the middle of the call, never answering it.
- `garbage(lines)`: writes `lines` lines that are not MCP messages to stdout (what a server
  that `print()`s does), then answers "done".
- `flood(megabytes, newlines)`: writes that much junk to stdout, in 64 KiB writes, as one
  line without end (`newlines` false) or as many lines, then answers "flooded".
- `shout(count)`: sends `count` log notifications, then answers; with no caller listening
  the bridge has nowhere to put them.

The SDK 2.x guards its wire: while it serves, fd 1 points at stderr, so a stray `print()` misses
stdout. Servers on other SDKs (the 1.x Python SDK, a Node server's `console.log`) have no such
guard, and their prints land between the messages. The tools write to the wire's own descriptor
to act as those do.
"""

import atexit
import os
import sys
import time

from mcp.server import stdio as stdio_transport
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("bridge-test")


def raw_stdout(data: bytes) -> None:
    """Writes to the pipe the transport's messages go to (see the module docs)."""
    claim = stdio_transport._claims.get(1)
    fd = claim.private_fd if claim is not None and claim.private_fd is not None else 1
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@server.tool()
def echo(text: str) -> str:
    return text


@server.tool()
async def count(steps: int, ctx: Context) -> str:
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps)
    return f"counted {steps}"


@server.tool()
def whoami() -> str:
    return str(os.getpid())


@server.tool()
def crash(code: int = 3) -> str:
    sys.stderr.write(f"crashing on purpose with status {code}\n")
    sys.stderr.flush()
    os._exit(code)


@server.tool()
def garbage(lines: int = 3) -> str:
    for n in range(lines):
        raw_stdout(f"debug: this is not JSON-RPC, line {n}\n".encode())
    raw_stdout(b'{"not": "a jsonrpc message"}\n')
    return "done"


@server.tool()
def flood(megabytes: int = 64, newlines: bool = False) -> str:
    chunk = (b"x" * 1023 + b"\n") * 64 if newlines else b"x" * 65536
    for _ in range(megabytes * 16):
        raw_stdout(chunk)
    raw_stdout(b"\n")
    return "flooded"


@server.tool()
async def shout(count: int, ctx: Context) -> str:
    for n in range(count):
        await ctx.info(f"message {n}")
    return f"shouted {count}"


def write_exit_marker(path):
    """At a clean exit (stdin closed), takes half a second, as a server finishing its work
    does, then leaves a file behind: a process killed first leaves none."""
    time.sleep(0.5)
    with open(path, "w") as marker:
        marker.write(f"exited cleanly: {os.getpid()}\n")


if __name__ == "__main__":
    if os.environ.get("EXIT_MARKER"):
        atexit.register(write_exit_marker, os.environ["EXIT_MARKER"])
    server.run("stdio")
