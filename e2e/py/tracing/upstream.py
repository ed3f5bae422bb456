#!/usr/bin/env python3
"""A traced MCP server (fastmcp 3.x, run it with the Python of e2e/.venv-mcp1) for the tracing
tests: it continues the W3C `traceparent` of every HTTP request it gets and exports its spans
over OTLP/HTTP, so a test can check that the sidecar propagates its trace to the upstream.

usage: upstream.py --port P [--stateless] [--otlp-endpoint URL] [--otlp-timeout S] [--service-name NAME]

Streamable HTTP at /mcp on 127.0.0.1, tools `echo(text)` and `add(a, b)`; GET /healthz answers ok.
Spans, each exported as soon as it ends (SimpleSpanProcessor) to --otlp-endpoint, e.g.
http://127.0.0.1:PORT/v1/traces (none without it), with resource service.name=--service-name:
  - opentelemetry-instrumentation-asgi: one SERVER span per HTTP request ("POST /mcp"), the child
    of the request's `traceparent` header;
  - fastmcp's own: a SERVER span per MCP operation ("tools/call echo", "tools/list"), scope
    "fastmcp", the child of the current span (in stateless mode the HTTP span; with sessions the
    span of the request that started the session) or else of a traceparent in the request's _meta.
An export blocks the request that ended the span until it is answered, and the exporter retries a
503 with backoff: against a receiver that refuses or hangs, every span costs up to --otlp-timeout
seconds (default 10, the exporter's). Give the upstream its own receiver in mode ok, or a short
timeout (0.5 gives up on a 503 at once: the first backoff is longer).
"""

import argparse

import uvicorn
from fastmcp import FastMCP
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from starlette.requests import Request
from starlette.responses import PlainTextResponse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stateless", action="store_true", help="no sessions")
    parser.add_argument("--otlp-endpoint", help="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces")
    parser.add_argument("--otlp-timeout", type=float, default=10.0, help="seconds per export")
    parser.add_argument("--service-name", default="traced-upstream")
    args = parser.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": args.service_name}))
    if args.otlp_endpoint:
        exporter = OTLPSpanExporter(endpoint=args.otlp_endpoint, timeout=args.otlp_timeout)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # before FastMCP asks for its tracer

    mcp = FastMCP("traced-upstream")

    @mcp.tool()
    def echo(text: str) -> str:
        """Returns the text."""
        return text

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @mcp.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    app = mcp.http_app(path="/mcp", stateless_http=args.stateless)
    # Only the SERVER span per request, not the INTERNAL "http receive"/"http send" ones per message.
    traced = OpenTelemetryMiddleware(app, tracer_provider=provider, exclude_spans=["receive", "send"])
    uvicorn.run(traced, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
