#!/usr/bin/env python3
"""A fake Phabricator for the OAuth tests: its OAuth server and two Conduit API methods, speaking
the real wire format.

usage: fake_phabricator.py --port P --client-id ID --client-secret SECRET --redirect-uri URI

- `GET /oauthserver/auth/?client_id=&redirect_uri=&response_type=code&scope=&state=`: the
  authorization page. The test user (alice) approves at once: 302 to the redirect URI with `code`
  and `state`. The client id and redirect URI must be the registered ones; a PKCE challenge is
  refused (Phabricator's OAuth server has no PKCE, and Conduit must not forward one).
- `POST /oauthserver/token/` (form): `grant_type=authorization_code`, `code`, `redirect_uri`; the
  client authenticates with HTTP Basic. A code is good once. Answers `{"access_token", ...}`.
- `POST /api/user.whoami` and `POST /api/maniphest.info` (form, `access_token=` or `api.token=`):
  the Conduit envelope `{"result", "error_code", "error_info"}`, always HTTP 200, uncompressed.

Every request is logged to stdout as one JSON object per line (what the tests assert on); secrets
are never logged, only whether they matched. Binds 127.0.0.1 only. Standard library only.
"""

import argparse
import base64
import binascii
import hmac
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

USER = {
    "phid": "PHID-USER-alice0000000000000",
    "userName": "alice",
    "realName": "Alice Example",
    "primaryEmail": "alice@example.com",
    "roles": ["verified", "approved", "activated"],
}

TASKS = {
    7: {
        "id": "7",
        "phid": "PHID-TASK-seven00000000000000",
        "title": "Make OAuth work behind a subpath",
        "status": "open",
        "priority": "High",
    },
}

MAX_BODY = 64 * 1024


class State:
    """Codes and tokens issued so far (in memory: the process lives for one test)."""

    def __init__(self, client_id, client_secret, redirect_uri):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.lock = threading.Lock()
        self.codes = {}  # code -> redirect_uri it was issued for
        self.tokens = set()


def log(event):
    print(json.dumps(event, sort_keys=True), flush=True)


def first(form, name):
    values = form.get(name)
    return values[0] if values else None


class Handler(BaseHTTPRequestHandler):
    server_version = "FakePhabricator/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self):
        return self.server.state

    # === helpers ===

    def reply(self, status, body, content_type="application/json", headers=()):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def reply_json(self, status, value, headers=()):
        self.reply(status, json.dumps(value), headers=headers)

    def read_form(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        raw = self.rfile.read(length).decode("utf-8", "replace")
        return parse_qs(raw, keep_blank_values=True)

    def basic_credentials(self):
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, password

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass  # every request is logged as JSON instead

    # === routes ===

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        if url.path == "/oauthserver/auth/":
            self.authorize(parse_qs(url.query, keep_blank_values=True))
        else:
            log({"event": "not-found", "method": "GET", "path": url.path})
            self.reply(404, "not found", "text/plain")

    def do_POST(self):  # noqa: N802 - the stdlib's name
        path = urlsplit(self.path).path
        form = self.read_form()
        if form is None:
            self.reply(413, "too large", "text/plain")
        elif path == "/oauthserver/token/":
            self.token(form)
        elif path == "/api/user.whoami":
            self.conduit("user.whoami", form, lambda params: USER)
        elif path == "/api/maniphest.info":
            self.conduit("maniphest.info", form, self.maniphest_info)
        else:
            log({"event": "not-found", "method": "POST", "path": path})
            self.reply(404, "not found", "text/plain")

    def authorize(self, query):
        client_id = first(query, "client_id")
        redirect_uri = first(query, "redirect_uri")
        state = first(query, "state")
        event = {
            "event": "authorize",
            "client_id_ok": client_id == self.state.client_id,
            "redirect_uri": redirect_uri,
            "response_type": first(query, "response_type"),
            "scope": first(query, "scope"),
            "pkce": "code_challenge" in query,
            "has_state": state is not None,
        }
        log(event)
        if not event["client_id_ok"]:
            self.reply(400, "unknown OAuth client", "text/plain")
            return
        if redirect_uri != self.state.redirect_uri:
            self.reply(400, f"redirect_uri must be {self.state.redirect_uri}", "text/plain")
            return
        if event["response_type"] != "code" or event["pkce"]:
            self.reply(400, "only response_type=code without PKCE is supported", "text/plain")
            return
        code = secrets.token_hex(16)
        with self.state.lock:
            self.state.codes[code] = redirect_uri
        params = {"code": code}
        if state is not None:
            params["state"] = state
        parts = urlsplit(redirect_uri)
        query_string = "&".join(q for q in (parts.query, urlencode(params)) if q)
        location = urlunsplit((parts.scheme, parts.netloc, parts.path, query_string, ""))
        self.reply(302, "", "text/plain", headers=[("Location", location)])

    def token(self, form):
        credentials = self.basic_credentials()
        basic_ok = credentials is not None and credentials[0] == self.state.client_id and hmac.compare_digest(
            credentials[1], self.state.client_secret
        )
        code = first(form, "code")
        with self.state.lock:
            issued_for = self.state.codes.pop(code, None) if code else None
        event = {
            "event": "token",
            "basic_auth": credentials is not None,
            "client_ok": basic_ok,
            "grant_type": first(form, "grant_type"),
            "code_ok": issued_for is not None,
            "redirect_uri": first(form, "redirect_uri"),
            "pkce": "code_verifier" in form,
        }
        log(event)
        if not basic_ok:
            self.reply_json(401, {"error": "invalid_client"})
            return
        if event["grant_type"] != "authorization_code" or event["pkce"]:
            self.reply_json(400, {"error": "unsupported_grant_type"})
            return
        if issued_for is None or issued_for != event["redirect_uri"]:
            self.reply_json(400, {"error": "invalid_grant"})
            return
        token = "phab-oauth-" + secrets.token_hex(12)
        with self.state.lock:
            self.state.tokens.add(token)
        self.reply_json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def conduit(self, method, form, result_of):
        token = first(form, "access_token") or first(form, "api.token")
        with self.state.lock:
            known = token in self.state.tokens
        log({"event": "conduit", "method": method, "token_known": known,
             "credential": "access_token" if "access_token" in form else
             ("api.token" if "api.token" in form else None)})
        if not known:
            envelope = {"result": None, "error_code": "ERR-INVALID-AUTH",
                        "error_info": "API token is invalid or expired."}
        else:
            try:
                envelope = {"result": result_of(form), "error_code": None, "error_info": None}
            except LookupError as error:
                envelope = {"result": None, "error_code": "ERR-CONDUIT-CORE", "error_info": str(error)}
        self.reply_json(200, envelope)

    @staticmethod
    def maniphest_info(form):
        raw = first(form, "task_id")
        try:
            task = TASKS[int(raw)]
        except (TypeError, ValueError, KeyError):
            raise LookupError(f"No such Maniphest task: {raw!r}") from None
        return task


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--redirect-uri", required=True,
                        help="the redirect URI registered for the client (exact match)")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args.client_id, args.client_secret, args.redirect_uri)
    log({"event": "listening", "port": server.server_address[1]})
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
