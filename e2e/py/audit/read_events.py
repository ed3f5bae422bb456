"""Reads the sidecar's audit event stream (`GET /events` on its admin port) with httpx-sse, the
SSE client the MCP SDK itself uses: prints `open` once the stream's head arrived, then each
event's data (one JSON object) on a line of its own, and exits after --count events."""

import argparse
import json
import sys

import httpx
from httpx_sse import connect_sse


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        with connect_sse(client, "GET", args.url) as source:
            source.response.raise_for_status()
            print("open", flush=True)
            seen = 0
            for event in source.iter_sse():
                # A keep-alive comment is no event: httpx-sse skips it.
                json.loads(event.data)
                print(event.data, flush=True)
                seen += 1
                if seen == args.count:
                    return 0
    print("the stream ended early", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
