#!/usr/bin/env python3
"""A full MCP OAuth login driven by the Python MCP SDK 2.x client, with a scripted browser; then
tool calls in one session (run it with the Python of e2e/.venv-mcp2).

usage: login.py --url P/mcp --tool NAME [--arguments JSON] [--calls N] [--timeout SECONDS]
                [--user NAME | --logged-out] [--state FILE]

The SDK's `OAuthClientProvider` does everything a real client does on its own: the first request
gets a 401, it discovers the protected-resource metadata and the authorization server's metadata,
registers itself, and sends "the user" to the authorization URL. The browser is this script: it
follows the authorization URL and every redirect after it with an HTTP client that keeps cookies
the way a browser does (by domain and path) and asks for HTML as a browser does, submits the
consent form it is shown ("Allow Access"), and stops at the redirect to the client's own redirect
URI, whose `code` and `state` it hands to the SDK's callback handler. The SDK then exchanges the
code for a token and retries. Any other page stops the browser, and the login fails with the
page's status and visible text.

The browser is logged in to Phabricator as `--user` (default alice): it holds Phabricator's
session cookie `phsid=session-<user>` (what the fake Phabricator accepts), scoped to the path
`/oauthserver/` so it is sent to Phabricator's OAuth pages and nowhere else (every server here is
127.0.0.1 on its own port, and cookies are not port-scoped). `--logged-out`: no such cookie.

`--state FILE` keeps the SDK's storage across runs: the token (OAuthToken) and the client
registration (OAuthClientInformationFull) are loaded from FILE when it exists and written back
(mode 0600) after the run, whatever its outcome. A run with a stored token that the server still
accepts has no browser step; when the server refuses it (401), the SDK runs the flow again with
its stored registration.

The tool is called `--calls` times (default 1) in one session. A call the server refuses with a
JSON-RPC error (for example an HTTP 403 or 429 whose body is a JSON-RPC error) surfaces in the SDK
as `MCPError` with that error's code and message; the session survives and the next call is made.
An HTTP error status without a JSON-RPC error body surfaces as `MCPError` -32603 "Server returned
an error response". (A 403 whose WWW-Authenticate says `error="insufficient_scope"` is not passed
on: the SDK's OAuth provider answers it with a new authorization for more scopes.) Anything else
that fails (the login, the transport) ends the session and the run: the report's `error`.

Prints one JSON report on stdout:
  {"user": NAME | null,
   "state"?: {"path", "loaded", "saved", "save_error"?},
   "sdk": [{"method", "url", "status", "location"?, "www_authenticate"?}...],   # the SDK's requests
   "browser": [{"method", "url", "status", "location"?, "set_cookie": [...],
                "sent_cookies": [names]}...],                                  # empty: no browser
   "authorization_url"?: "...",
   "calls": [{"ok": true, "is_error", "structured", "text"}
             | {"ok": false, "error": "MCPError: message", "code": JSON-RPC error code}...],
   "tool": <calls[0]>, "error"?: "..."}
Exit status 0 when every call returned a result without isError, 1 otherwise (the report says
why). Everything stays on loopback; every request is bounded in time.
"""

import argparse
import asyncio
import json
import os
import sys
from html.parser import HTMLParser
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPError

# The client's redirect URI: nothing listens there; the browser stops at the redirect to it.
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
MAX_BROWSER_HOPS = 20
# What a browser asks for: servers that negotiate (FastMCP's error pages do) answer it with HTML.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# Phabricator's session cookie, on the (loopback) host the fake Phabricator runs on, sent only
# to its OAuth server's pages.
SESSION_COOKIE = "phsid"
PHABRICATOR_HOST = "127.0.0.1"
PHABRICATOR_OAUTH_PATH = "/oauthserver/"


class MemoryStorage:
    """The SDK's token storage, in memory; `load` and `save` keep it in a JSON file."""

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

    def load(self, path):
        """Loads `path` when it exists; True when it did."""
        if not os.path.exists(path):
            return False
        with open(path, encoding="utf-8") as file:
            saved = json.load(file)
        if saved.get("tokens"):
            self.tokens = OAuthToken.model_validate(saved["tokens"])
        if saved.get("client_info"):
            self.client_info = OAuthClientInformationFull.model_validate(saved["client_info"])
        return True

    def save(self, path):
        """Writes the storage to `path` (it holds secrets: owner-only, replaced atomically)."""
        saved = {name: value.model_dump(mode="json", exclude_none=True) if value is not None else None
                 for name, value in (("tokens", self.tokens), ("client_info", self.client_info))}
        temporary = f"{path}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump(saved, file, indent=1)
        os.replace(temporary, path)


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


class TextParser(HTMLParser):
    """The text a browser would show: everything outside <style> and <script>."""

    def __init__(self):
        super().__init__()
        self.parts = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script"):
            self.hidden += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script") and self.hidden:
            self.hidden -= 1

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def page_text(response, limit=500):
    """The start of what `response` shows: its visible text for HTML, else its body."""
    if "text/html" not in response.headers.get("content-type", ""):
        return response.text[:limit]
    parser = TextParser()
    parser.feed(response.text)
    return " ".join(" ".join(parser.parts).split())[:limit]


def cookie_names(header):
    """The names in a Cookie request header."""
    cookies = SimpleCookie()
    try:
        cookies.load(header or "")
    except CookieError:
        return ["<unparsable>"]
    return sorted(cookies)


class Browser:
    """Follows the authorization URL to the client's redirect URI, approving consent on the way."""

    def __init__(self, report, timeout, user):
        self.report = report
        self.client = httpx2.AsyncClient(follow_redirects=False, timeout=timeout, trust_env=False,
                                         headers={"Accept": BROWSER_ACCEPT})
        if user:
            self.client.cookies.set(SESSION_COOKIE, f"session-{user}", domain=PHABRICATOR_HOST,
                                    path=PHABRICATOR_OAUTH_PATH)
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
                   "set_cookie": response.headers.get_list("set-cookie"),
                   "sent_cookies": cookie_names(response.request.headers.get("cookie"))}
            if "location" in response.headers:
                hop["location"] = response.headers["location"]
            self.report.append(hop)
            if response.status_code in (301, 302, 303, 307, 308):
                target = urljoin(url, response.headers["location"])
                if target.startswith(REDIRECT_URI):
                    return authorization_code(target)
                method, data = ("GET", None) if response.status_code in (301, 302, 303) else (method, data)
                url = target
                continue
            if response.status_code == 200 and "text/html" in response.headers.get("content-type", ""):
                method, url, data = consent(url, response)
                continue
            raise RuntimeError(f"the browser stopped at {url}: {response.status_code} {page_text(response)}")
        raise RuntimeError(f"more than {MAX_BROWSER_HOPS} hops without reaching {REDIRECT_URI}")


def authorization_code(redirect):
    """What the client's redirect URI received."""
    query = parse_qs(urlsplit(redirect).query)
    if "error" in query:
        raise RuntimeError(f"authorization refused: {query}")
    return AuthorizationCodeResult(
        code=query["code"][0],
        state=query.get("state", [None])[0],
        iss=query.get("iss", [None])[0],
    )


def consent(url, response):
    """`(method, url, form data)` that approves the consent form `response` shows."""
    parser = FormParser()
    parser.feed(response.text)
    form = parser.form
    if form is None or "approve" not in form["buttons"].get("action", []):
        raise RuntimeError(f"a page without a consent form at {url}: {page_text(response)}")
    return "POST", urljoin(url, form["action"]), dict(form["fields"], action="approve")


async def call(client, tool, arguments):
    """One tool call's outcome; a JSON-RPC error is an outcome too (the session lives on)."""
    try:
        result = await client.call_tool(tool, arguments)
    except MCPError as error:
        return {"ok": False, "error": describe(error), "code": error.code}
    text = "".join(getattr(block, "text", "") for block in result.content)
    return {"ok": True, "is_error": bool(result.is_error), "structured": result.structured_content, "text": text}


async def run(args, storage, report):
    browser = Browser(report["browser"], args.timeout, args.user)

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
        storage=storage,
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

    arguments = json.loads(args.arguments)
    http = httpx2.AsyncClient(auth=provider, timeout=args.timeout, trust_env=False,
                              event_hooks={"response": [on_response]})
    try:
        async with http, Client(streamable_http_client(args.url, http_client=http), mode="legacy") as client:
            for _ in range(args.calls):
                report["calls"].append(await call(client, args.tool, arguments))
    finally:
        await browser.client.aclose()
    return all(outcome["ok"] and not outcome["is_error"] for outcome in report["calls"])


def describe(error):
    """`error` as `Type: message`; for an exception group (anyio's task groups), its leaves,
    which say what actually failed."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8080/ai/mcp")
    parser.add_argument("--tool", required=True)
    parser.add_argument("--arguments", default="{}", help="the tool's arguments as a JSON object")
    parser.add_argument("--calls", type=int, default=1, help="how many times to call the tool, in one session")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per HTTP request")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", default="alice", help="the Phabricator user the browser is logged in as")
    who.add_argument("--logged-out", dest="user", action="store_const", const=None,
                     help="the browser has no Phabricator session")
    parser.add_argument("--state", help="a JSON file keeping the SDK's token and client registration")
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    return args


def save_state(storage, path):
    """`{"saved": True}`, or why the state could not be written."""
    try:
        storage.save(path)
    except OSError as error:
        return {"saved": False, "save_error": describe(error)}
    return {"saved": True}


def main(argv):
    args = parse_args(argv)
    storage = MemoryStorage()
    report = {"user": args.user, "sdk": [], "browser": [], "calls": []}
    if args.state:
        report["state"] = {"path": args.state, "loaded": False, "saved": False}
    try:
        if args.state:
            report["state"]["loaded"] = storage.load(args.state)
        ok = asyncio.run(asyncio.wait_for(run(args, storage, report), timeout=args.timeout * (4 + args.calls)))
    except BaseException as error:  # the report must come out whatever failed
        if isinstance(error, KeyboardInterrupt):
            raise
        report["error"] = describe(error)
        ok = False
    if args.state:
        report["state"].update(save_state(storage, args.state))
    if report["calls"]:
        report["tool"] = report["calls"][0]
    json.dump(report, sys.stdout, indent=1, default=str)
    print()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
