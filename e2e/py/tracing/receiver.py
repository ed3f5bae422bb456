#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the tracing tests: it stands in for an OpenTelemetry collector,
decodes every export with the official protobuf classes (opentelemetry-proto) and shows what it
got as JSON, so a test can check the spans the sidecar (and the traced upstream) sent.

usage: receiver.py [--port P] [--mode ok|refuse|hang]

Listens on 127.0.0.1 (port 0 picks a free one) and prints `listening on PORT` as its first line.
  POST /v1/traces  an ExportTraceServiceRequest (protobuf, optionally Content-Encoding: gzip).
                   ok: 200 with an empty ExportTraceServiceResponse (400 when the body does not
                   decode); refuse: 503 to every export; hang: reads the request, never answers.
  GET /spans       {"exports": N, "bad": N, "spans": [...]}: N counts every export request
                   (refused and hung ones too), "bad" the ones that did not decode. See span_json.
  DELETE /spans    forgets everything received so far.
Each export is also logged as one line on stderr.
"""

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

LOCK = threading.Lock()
STATE = {"exports": 0, "bad": 0, "spans": []}


def any_value(value):
    """An OTLP AnyValue as JSON (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def attributes(key_values):
    return {kv.key: any_value(kv.value) for kv in key_values}


def span_json(span, resource, scope):
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "name": span.name,
        "kind": Span.SpanKind.Name(span.kind),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "events": [
            {"name": e.name, "time_ns": e.time_unix_nano, "attributes": attributes(e.attributes)}
            for e in span.events
        ],
        "status": {"code": Status.StatusCode.Name(span.status.code), "message": span.status.message},
        "resource": resource,
        "scope": scope,
        "flags": span.flags,
    }


def decode(body):
    """The spans of one export, as JSON objects; raises DecodeError."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = {"name": scope_spans.scope.name, "version": scope_spans.scope.version}
            spans.extend(span_json(s, resource, scope) for s in scope_spans.spans)
    return spans


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as collectors do; every answer has a length
    mode = "ok"

    def answer(self, status, body=b"", content_type="application/x-protobuf"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def do_POST(self):
        if self.path.split("?")[0] != "/v1/traces":
            return self.answer(404, b"not found\n", "text/plain")
        with LOCK:
            STATE["exports"] += 1
            number = STATE["exports"]
        try:
            body = self.read_body()
        except (OSError, ValueError) as e:  # bad gzip or chunk framing
            body, error = None, e
        if self.mode == "hang":
            print(f"export {number}: hanging, never answering", file=sys.stderr, flush=True)
            threading.Event().wait()
        if self.mode == "refuse":
            print(f"export {number}: refused with 503", file=sys.stderr, flush=True)
            return self.answer(503, b"refused\n", "text/plain")
        try:
            if body is None:
                raise DecodeError(str(error))
            spans = decode(body)
        except DecodeError as e:
            with LOCK:
                STATE["bad"] += 1
            print(f"export {number}: undecodable ({e}), 400", file=sys.stderr, flush=True)
            return self.answer(400, b"undecodable ExportTraceServiceRequest\n", "text/plain")
        with LOCK:
            STATE["spans"].extend(spans)
        names = ", ".join(s["name"] for s in spans)
        print(f"export {number}: {len(spans)} spans ({names})", file=sys.stderr, flush=True)
        self.answer(200, ExportTraceServiceResponse().SerializeToString())

    def do_GET(self):
        if self.path.split("?")[0] != "/spans":
            return self.answer(404, b"not found\n", "text/plain")
        with LOCK:
            body = json.dumps(STATE).encode()
        self.answer(200, body, "application/json")

    def do_DELETE(self):
        if self.path.split("?")[0] != "/spans":
            return self.answer(404, b"not found\n", "text/plain")
        with LOCK:
            STATE.update(exports=0, bad=0, spans=[])
        self.answer(204)

    def log_message(self, format, *args):  # the export lines above say enough
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("ok", "refuse", "hang"), default="ok")
    args = parser.parse_args()
    Handler.mode = args.mode
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True  # hung request threads must not keep the process alive
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
