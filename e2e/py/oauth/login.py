#!/usr/bin/env python3
"""A full MCP OAuth login driven by the Python MCP SDK 2.x client, with a scripted browser; then one
tool call (run it with the Python of e2e/.venv-mcp2).

usage: login.py --url P/mcp --tool NAME [--arguments JSON] [--timeout SECONDS]

The SDK's `OAuthClientProvider` does everything a real client does on its own: the first request
gets a 401, it discovers the protected-resource metadata and the authorization server's metadata,
registers itself, and sends "the user" to the authorization URL. The browser is this script: it
follows the authorization URL and every redirect after it with an HTTP client that keeps cookies
the way a browser does (by domain and path), submits the consent form it is shown ("Allow
Access"), and stops at the redirect to the client's own redirect URI, whose `code` and `state` it
hands to the SDK's callback handler. The SDK then exchanges the code for a token and retries; the
tool is called with that token.

Prints one JSON report on stdout:
  {"sdk": [{"method", "url", "status", "location"?, "www_authenticate"?}...],   # the SDK's requests
   "browser": [{"method", "url", "status", "location"?, "set_cookie": [...]}...],
   "tool": {"is_error", "structured", "text"}, "error"?: "..."}
Exit status 0 when the tool call returned without error, 1 otherwise (the report says why).
Everything stays on loopback; every request is bounded in time.
"""

import argparse
import asyncio
import json
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

# The client's redirect URI: nothing listens there; the browser stops at the redirect to it.
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
MAX_BROWSER_HOPS = 20


class MemoryStorage:
    """The SDK's token storage, in memory."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class FormParser(HTMLParser):
    """The first POST form of a page: its action, hidden inputs and submit buttons."""

    def __init__(self):
        super().__init__()
        self.form = None
        self.done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.done:
            return
        if tag == "form" and self.form is None and (attrs.get("method") or "").upper() == "POST":
            self.form = {"action": attrs.get("action") or "", "fields": {}, "buttons": {}}
        elif self.form is not None and tag == "input" and attrs.get("name"):
            if (attrs.get("type") or "text").lower() in ("hidden", "text"):
                self.form["fields"][attrs["name"]] = attrs.get("value") or ""
        elif self.form is not None and tag == "button" and attrs.get("name"):
            self.form["buttons"].setdefault(attrs["name"], []).append(attrs.get("value") or "")

    def handle_endtag(self, tag):
        if tag == "form" and self.form is not None:
            self.done = True


class Browser:
    """Follows the authorization URL to the client's redirect URI, approving consent on the way."""

    def __init__(self, report, timeout):
        self.report = report
        self.client = httpx2.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False)
        self.result = asyncio.get_running_loop().create_future()

    async def visit(self, authorization_url):
        try:
            self.result.set_result(await self.walk(authorization_url))
        except Exception as error:  # handed to the SDK's callback, which raises it
            self.result.set_exception(error)

    async def walk(self, url):
        method, data = "GET", None
        for _ in range(MAX_BROWSER_HOPS):
            response = await self.client.request(method, url, data=data)
            hop = {"method": method, "url": url, "status": response.status_code,
                   "set_cookie": response.headers.get_list("set-cookie")}
            if "location" in response.headers:
                hop["location"] = response.headers["location"]
            self.report.append(hop)
            if response.status_code in (301, 302, 303, 307, 308):
                target = urljoin(url, response.headers["location"])
                if target.startswith(REDIRECT_URI):
                    query = parse_qs(urlsplit(target).query)
                    if "error" in query:
                        raise RuntimeError(f"authorization refused: {query}")
                    return AuthorizationCodeResult(
                        code=query["code"][0],
                        state=query.get("state", [None])[0],
                        iss=query.get("iss", [None])[0],
                    )
                method, data = ("GET", None) if response.status_code in (301, 302, 303) else (method, data)
                url = target
                continue
            if response.status_code == 200 and "text/html" in response.headers.get("content-type", ""):
                parser = FormParser()
                parser.feed(response.text)
                form = parser.form
                if form is None or "approve" not in form["buttons"].get("action", []):
                    raise RuntimeError(f"a page without a consent form at {url}: {response.text[:500]}")
                data = dict(form["fields"], action="approve")
                method, url = "POST", urljoin(url, form["action"])
                continue
            raise RuntimeError(f"the browser stopped at {url}: {response.status_code} {response.text[:500]}")
        raise RuntimeError(f"more than {MAX_BROWSER_HOPS} hops without reaching {REDIRECT_URI}")


async def run(args, report):
    browser = Browser(report["browser"], args.timeout)

    async def redirect_handler(authorization_url):
        report["authorization_url"] = authorization_url
        asyncio.get_running_loop().create_task(browser.visit(authorization_url))

    async def callback_handler():
        return await browser.result

    provider = OAuthClientProvider(
        server_url=args.url,
        client_metadata=OAuthClientMetadata(
            client_name="sluice e2e",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=MemoryStorage(),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )

    async def on_response(response):
        entry = {"method": response.request.method, "url": str(response.request.url),
                 "status": response.status_code}
        for name in ("location", "www-authenticate"):
            if name in response.headers:
                entry[name.replace("-", "_")] = response.headers[name]
        report["sdk"].append(entry)

    http = httpx2.AsyncClient(auth=provider, timeout=args.timeout, trust_env=False,
                              event_hooks={"response": [on_response]})
    try:
        async with http, Client(streamable_http_client(args.url, http_client=http), mode="legacy") as client:
            result = await client.call_tool(args.tool, json.loads(args.arguments))
    finally:
        await browser.client.aclose()
    text = "".join(getattr(block, "text", "") for block in result.content)
    report["tool"] = {"is_error": bool(result.is_error), "structured": result.structured_content, "text": text}
    return not result.is_error


def describe(error):
    """`error` as `Type: message`; for an exception group (anyio's task groups), its leaves,
    which say what actually failed."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8080/ai/mcp")
    parser.add_argument("--tool", required=True)
    parser.add_argument("--arguments", default="{}", help="the tool's arguments as a JSON object")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per HTTP request")
    args = parser.parse_args(argv)
    report = {"sdk": [], "browser": []}
    try:
        ok = asyncio.run(asyncio.wait_for(run(args, report), timeout=args.timeout * 4))
    except BaseException as error:  # the report must come out whatever failed
        if isinstance(error, KeyboardInterrupt):
            raise
        report["error"] = describe(error)
        ok = False
    json.dump(report, sys.stdout, indent=1, default=str)
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
