#!/usr/bin/env python3
"""A fake Phabricator for the OAuth tests: its OAuth server, a browser login session and three
Conduit API methods, for two users, speaking the real wire format.

usage: fake_phabricator.py --port P --client-id ID --client-secret SECRET --redirect-uri URI

Users: `alice` and `bob` (see USERS). A browser is logged in as one of them when it sends
Phabricator's session cookie `phsid` with the value `session-<user>`; nothing else logs in.

- `GET /oauthserver/auth/?client_id=&redirect_uri=&response_type=code&scope=&state=`: the
  authorization page. Without a valid session (no `phsid`, or one naming no user) nothing is
  approved: the answer is the login page in place, HTTP 200, as Phabricator renders its login
  controller at the URL asked for. With one, the client id and redirect URI must be the
  registered ones (else 400), and a PKCE challenge is refused (Phabricator's OAuth server has no
  PKCE, and Conduit must not forward one); then the session's user approves at once: 302 to the
  redirect URI with `code` and `state` (what the real one does for a trusted client, or for one
  the user authorized before).
- `POST /oauthserver/token/` (form): `grant_type=authorization_code`, `code`, `redirect_uri`; the
  client authenticates with HTTP Basic. A code is good once and remembers its user. Answers
  `{"access_token", ...}`; the token remembers the user too.
- `POST /api/<method>` (form, `access_token=` or `api.token=`): the Conduit envelope
  `{"result", "error_code", "error_info"}`, always HTTP 200, uncompressed. Methods:
  `user.whoami` (the token's user), `maniphest.info` (`task_id`), `maniphest.createtask`
  (`title`, optional `description` and `ownerPHID`; records the task, authored by the token's
  user). A token this server did not issue gets `ERR-INVALID-AUTH`; an unknown method
  `ERR-CONDUIT-CALL`.

Where it differs from a real Phabricator: there is no login form handling (the login page is
shown, never submitted), a session cookie naming no user gets the login page too (the real one
clears it and says the session is invalid), there is no consent page for the user, no token
expiry or refresh, no scopes enforced, error texts are approximate, and state lives in memory
for one process.

Every request is logged to stdout as one JSON object per line (what the tests assert on), with
`"user"` where a user is known. Secrets (client secret, session cookie values, codes, tokens) are
never logged: only whether they matched, and for a Conduit credential a fingerprint (the first 12
hex digits of its SHA-256) and whether it is shaped like a JWT (which no Phabricator token is).
Binds 127.0.0.1 only. Standard library only.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sys
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

USERS = {
    "alice": {
        "phid": "PHID-USER-alice000000000000000",
        "userName": "alice",
        "realName": "Alice Example",
        "primaryEmail": "alice@example.com",
        "roles": ["verified", "approved", "activated"],
    },
    "bob": {
        "phid": "PHID-USER-bob00000000000000000",
        "userName": "bob",
        "realName": "Bob Example",
        "primaryEmail": "bob@example.com",
        "roles": ["verified", "approved", "activated"],
    },
}

# Phabricator's session cookie, and the value that logs each user in.
SESSION_COOKIE = "phsid"
SESSIONS = {f"session-{name}": name for name in USERS}

TASKS = {
    7: {
        "id": "7",
        "phid": "PHID-TASK-seven000000000000000",
        "authorPHID": USERS["alice"]["phid"],
        "ownerPHID": None,
        "title": "Make OAuth work behind a subpath",
        "description": "",
        "status": "open",
        "priority": "High",
        "objectName": "T7",
    },
}

MAX_BODY = 64 * 1024

LOGIN_PAGE = """<!DOCTYPE html>
<html><head><title>Login</title></head><body>
<h1>Login to Phabricator</h1>
<p>You are not logged in. Log in to continue.</p>
<form method="POST" action="/auth/login/password:self/">
<input type="text" name="username" value="">
<input type="password" name="password" value="">
<button type="submit" name="login">Log In</button>
</form>
</body></html>
"""


class ConduitError(Exception):
    """A Conduit API error: its `error_code` and `error_info`."""

    def __init__(self, code, info):
        super().__init__(f"{code}: {info}")
        self.code = code
        self.info = info


class State:
    """Codes, tokens and tasks (in memory: the process lives for one test)."""

    def __init__(self, client_id, client_secret, redirect_uri):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.lock = threading.Lock()
        self.codes = {}  # code -> (redirect_uri it was issued for, user name)
        self.tokens = {}  # access token -> user name
        self.tasks = {task_id: dict(task) for task_id, task in TASKS.items()}


def log(event):
    print(json.dumps(event, sort_keys=True), flush=True)


def first(form, name):
    values = form.get(name)
    return values[0] if values else None


def fingerprint(secret):
    """A stable, non-reversible name for a secret, for the log."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def looks_like_jwt(token):
    parts = token.split(".")
    return len(parts) == 3 and parts[0].startswith("eyJ")


# === Conduit API methods: (state, user, form) -> result ===


def user_whoami(state, user, form):
    return USERS[user]


def maniphest_info(state, user, form):
    raw = first(form, "task_id")
    with state.lock:
        task = state.tasks.get(int(raw)) if raw and raw.isdigit() else None
    if task is None:
        raise ConduitError("ERR_BAD_TASK", "No such Maniphest task exists.")
    return task


def maniphest_createtask(state, user, form):
    title = first(form, "title") or ""
    if not title.strip():
        raise ConduitError("ERR-CONDUIT-CORE", "Tasks must have a title.")
    with state.lock:
        task_id = max(state.tasks) + 1
        task = {
            "id": str(task_id),
            "phid": "PHID-TASK-" + secrets.token_hex(10),
            "authorPHID": USERS[user]["phid"],
            "ownerPHID": first(form, "ownerPHID"),
            "title": title,
            "description": first(form, "description") or "",
            "status": "open",
            "priority": "Needs Triage",
            "objectName": f"T{task_id}",
            "dateCreated": str(int(time.time())),
        }
        state.tasks[task_id] = task
    return task


METHODS = {
    "user.whoami": user_whoami,
    "maniphest.info": maniphest_info,
    "maniphest.createtask": maniphest_createtask,
}


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

    def session(self):
        """`(status, user)` of the browser's session: "valid", "invalid" or "missing"."""
        cookies = SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie", ""))
        except CookieError:
            return "invalid", None
        if SESSION_COOKIE not in cookies:
            return "missing", None
        user = SESSIONS.get(cookies[SESSION_COOKIE].value)
        return ("valid", user) if user else ("invalid", None)

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
        elif path.startswith("/api/"):
            self.conduit(path[len("/api/"):], form)
        else:
            log({"event": "not-found", "method": "POST", "path": path})
            self.reply(404, "not found", "text/plain")

    def authorize(self, query):
        client_id = first(query, "client_id")
        redirect_uri = first(query, "redirect_uri")
        state = first(query, "state")
        session, user = self.session()
        event = {
            "event": "authorize",
            "client_id_ok": client_id == self.state.client_id,
            "redirect_uri": redirect_uri,
            "response_type": first(query, "response_type"),
            "scope": first(query, "scope"),
            "pkce": "code_challenge" in query,
            "has_state": state is not None,
            "session": session,
            "user": user,
        }
        refusal = self.authorization_refusal(event)
        event["approved"] = user is not None and refusal is None
        log(event)
        # Like Phabricator: logging in comes first, the request is looked at after.
        if user is None:
            self.reply(200, LOGIN_PAGE, "text/html; charset=UTF-8")
        elif refusal is not None:
            self.reply(400, refusal, "text/plain")
        else:
            self.approve(redirect_uri, state, user)

    def authorization_refusal(self, event):
        """Why the request itself is refused (whoever is logged in), or None."""
        if not event["client_id_ok"]:
            return "unknown OAuth client"
        if event["redirect_uri"] != self.state.redirect_uri:
            return f"redirect_uri must be {self.state.redirect_uri}"
        if event["response_type"] != "code" or event["pkce"]:
            return "only response_type=code without PKCE is supported"
        return None

    def approve(self, redirect_uri, state, user):
        code = secrets.token_hex(16)
        with self.state.lock:
            self.state.codes[code] = (redirect_uri, user)
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
            issued_for, user = self.state.codes.pop(code, (None, None)) if code else (None, None)
        event = {
            "event": "token",
            "basic_auth": credentials is not None,
            "client_ok": basic_ok,
            "grant_type": first(form, "grant_type"),
            "code_ok": issued_for is not None,
            "redirect_uri": first(form, "redirect_uri"),
            "pkce": "code_verifier" in form,
            "user": user,
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
            self.state.tokens[token] = user
        self.reply_json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def conduit(self, method, form):
        credential = "access_token" if "access_token" in form else ("api.token" if "api.token" in form else None)
        token = first(form, credential) if credential else None
        with self.state.lock:
            user = self.state.tokens.get(token) if token else None
        log({"event": "conduit", "method": method, "credential": credential,
             "token_known": user is not None, "user": user,
             "token_fingerprint": fingerprint(token) if token else None,
             "token_jwt": looks_like_jwt(token) if token else None})
        try:
            result = self.call(method, user, form)
            envelope = {"result": result, "error_code": None, "error_info": None}
        except ConduitError as error:
            envelope = {"result": None, "error_code": error.code, "error_info": error.info}
        self.reply_json(200, envelope)

    def call(self, method, user, form):
        # Like Phabricator: the method is looked up before the caller is authenticated.
        implementation = METHODS.get(method)
        if implementation is None:
            raise ConduitError("ERR-CONDUIT-CALL", f'Conduit method "{method}" does not exist.')
        if user is None:
            raise ConduitError("ERR-INVALID-AUTH", "API token is invalid or expired.")
        return implementation(self.state, user, form)


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
