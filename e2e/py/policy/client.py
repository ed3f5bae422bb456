#!/usr/bin/env python3
"""Drives an MCP server through the sidecar with the Python MCP SDK 2.x client (run it with the
Python of e2e/.venv-mcp2): lists the tools, then calls tools in order, recording what the SDK
returns or raises for each.

usage: client.py --url URL/mcp --mode legacy|auto [--header 'K: V']... --call NAME[:JSON]...
                 [--ca CA.pem [--cert CLIENT.crt --key CLIENT.key]]

With --ca the URL is https and the server's certificate must chain to CA.pem; with --cert and
--key the client presents that certificate (mutual TLS).

Prints one JSON report on stdout:
  {"tools": [names] | null, "list_error"?: {...}, "connect_error"?: {...},
   "calls": [{"tool", "ok": true, "is_error", "text"} | {"tool", "ok": false, "error", "type",
             "code"?}]}
Exit status 0 when the report was written (errors are data here); everything is bounded in time.
"""

import argparse
import asyncio
import json
import ssl

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def describe(exc):
    """What the SDK raised: its type, message and, for JSON-RPC errors, the code."""
    out = {"ok": False, "type": type(exc).__name__, "error": str(exc)}
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code is not None:
        out["code"] = code
    return out


async def run(args):
    headers = dict(h.split(": ", 1) for h in args.header)
    report = {"tools": None, "calls": []}
    try:
        await session(args, headers, report)
    except Exception as exc:  # noqa: BLE001 - connecting failed (e.g. refused credentials)
        report["connect_error"] = describe(exc)
    return report


def tls(args):
    """What httpx verifies the server with (and presents, for mutual TLS)."""
    if not args.ca:
        return True
    context = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    return context


async def session(args, headers, report):
    http = httpx2.AsyncClient(
        headers=headers, timeout=args.timeout, trust_env=False, verify=tls(args)
    )
    async with http, Client(streamable_http_client(args.url, http_client=http), mode=args.mode) as client:
        try:
            listed = await client.list_tools()
            report["tools"] = sorted(t.name for t in listed.tools)
        except Exception as exc:  # noqa: BLE001 - the report says what happened
            report["list_error"] = describe(exc)
        for spec in args.call:
            name, _, arguments = spec.partition(":")
            entry = {"tool": name}
            try:
                result = await client.call_tool(name, json.loads(arguments) if arguments else {})
                texts = [c.text for c in result.content if getattr(c, "text", None) is not None]
                entry.update(ok=True, is_error=bool(result.is_error), text="\n".join(texts))
            except Exception as exc:  # noqa: BLE001
                entry.update(describe(exc))
            report["calls"].append(entry)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", default="legacy")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--call", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    report = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout * 3))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
