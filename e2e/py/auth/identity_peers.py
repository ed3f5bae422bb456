#!/usr/bin/env python3
"""The identity peers sluice-proxy's authentication modes call, in one process, for the e2e
authentication test (run it with the Python of e2e/.venv-mcp2: it needs PyJWT and cryptography).

usage: identity_peers.py --port P --phabricator-token T --oauth-token T --sidecar-token T
                         --service-account-token T --audience A

- `POST /api/user.whoami` (form, `api.token=` or `access_token=`): Phabricator's Conduit
  envelope, always HTTP 200 and uncompressed: user `alice` for the two given tokens,
  `ERR-INVALID-AUTH` for anything else.
- `POST /apis/authentication.k8s.io/v1/tokenreviews`: a TokenReview for the given service
  account token (`system:serviceaccount:ci:runner`, valid for `--audience`) when the caller
  presents `Bearer <sidecar token>`; 401 otherwise.
- `GET /.well-known/openid-configuration` and `GET /jwks`: an OIDC issuer (issuer
  `http://127.0.0.1:P`) with one EC P-256 key made at start.

When listening, prints one line: `ready {"jwt": <an ES256 token for sub alice, aud --audience,
valid for an hour>}` (the test's credential for mode jwt). Then logs each request to stdout as
one JSON object per line, with no token in it. Binds 127.0.0.1 only.
"""

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

MAX_BODY = 64 * 1024


def log(event):
    print(json.dumps(event), flush=True)


def main():
    parser = argparse.ArgumentParser()
    for flag in ["--phabricator-token", "--oauth-token", "--sidecar-token",
                 "--service-account-token", "--audience"]:
        parser.add_argument(flag, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    issuer = f"http://127.0.0.1:{args.port}"
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="e2e-1", use="sig", alg="ES256")
    now = int(time.time())
    token = jwt.encode(
        {"iss": issuer, "sub": "alice", "aud": args.audience, "iat": now, "nbf": now - 5,
         "exp": now + 3600},
        key, algorithm="ES256", headers={"kid": "e2e-1"})

    class Handler(BaseHTTPRequestHandler):
        def reply(self, status, value):
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            return self.rfile.read(length)

        def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
            pass

        def do_GET(self):  # noqa: N802 - the stdlib's name
            log({"method": "GET", "path": self.path})
            if self.path == "/.well-known/openid-configuration":
                self.reply(200, {"issuer": issuer, "jwks_uri": f"{issuer}/jwks"})
            elif self.path == "/jwks":
                self.reply(200, {"keys": [jwk]})
            else:
                self.reply(404, {})

        def do_POST(self):  # noqa: N802 - the stdlib's name
            raw = self.body()
            if self.path == "/api/user.whoami":
                form = parse_qs(raw.decode("utf-8", "replace"))
                field = "access_token" if "access_token" in form else "api.token"
                given = (form.get(field) or [""])[0]
                known = given in (args.phabricator_token, args.oauth_token)
                log({"method": "POST", "path": self.path, "credential": field, "known": known,
                     "content_type": self.headers.get("Content-Type"),
                     "content_encoding": self.headers.get("Content-Encoding")})
                if known:
                    self.reply(200, {"result": {"phid": "PHID-USER-alice", "userName": "alice",
                                                "realName": "Alice Example"},
                                     "error_code": None, "error_info": None})
                else:
                    self.reply(200, {"result": None, "error_code": "ERR-INVALID-AUTH",
                                     "error_info": "API token is invalid."})
            elif self.path == "/apis/authentication.k8s.io/v1/tokenreviews":
                sidecar = self.headers.get("Authorization") == f"Bearer {args.sidecar_token}"
                review = json.loads(raw or b"{}")
                spec = review.get("spec", {})
                valid = (spec.get("token") == args.service_account_token
                         and args.audience in spec.get("audiences", []))
                log({"method": "POST", "path": self.path, "sidecar": sidecar, "valid": valid})
                if not sidecar:
                    self.reply(401, {"kind": "Status", "code": 401})
                    return
                status = {"authenticated": False, "error": "invalid bearer token"}
                if valid:
                    status = {"authenticated": True, "audiences": [args.audience],
                              "user": {"username": "system:serviceaccount:ci:runner",
                                       "groups": ["system:serviceaccounts"]}}
                self.reply(201, {"apiVersion": "authentication.k8s.io/v1",
                                 "kind": "TokenReview", "spec": spec, "status": status})
            else:
                log({"method": "POST", "path": self.path})
                self.reply(404, {})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print("ready " + json.dumps({"jwt": token}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
