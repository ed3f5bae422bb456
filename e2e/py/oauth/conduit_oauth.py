#!/usr/bin/env python3
"""An upstream like Conduit in OAuth-proxy mode, built with the `fastmcp` package (run it with the
Python of e2e/.venv-mcp1).

Where it differs from the real Conduit (skroutz/conduit): it serves 3 tools, not 51
(`pha_user_whoami`, `pha_task_get`, `pha_task_create`); it has only the http transport, always
in OAuth-proxy mode (no header-token mode, no stdio or sse); it binds 127.0.0.1 only; it has no
`--url`/`--host`/`--transport` flags, no outbound proxy and no TLS options; it takes
PHABRICATOR_URL with or without its `/api/` (the real one needs it); its log lines differ.
Everything a client or the sidecar can observe over HTTP is meant to be the same: the OAuth
proxy, the token verifier, the tools' names, arguments, annotations and result shapes, the
errors they report, and stateless or stateful streamable HTTP.

usage: conduit_oauth.py --port P [--server-url URL] [--phabricator-url URL] [--client-id ID]
                        [--client-secret SECRET] [--scope "whoami maniphest"]
                        [--stateless | --no-stateless]

Each option defaults to Conduit's own environment variable, so the env a rendered Deployment
gives Conduit can be handed over as it is: PHABRICATOR_MCP_SERVER_URL, PHABRICATOR_URL (with or
without its `/api/`), PHABRICATOR_OAUTH_CLIENT_ID, PHABRICATOR_OAUTH_CLIENT_SECRET,
PHABRICATOR_OAUTH_SCOPE. Stateless streamable HTTP by default, as Conduit's `--stateless`;
`--no-stateless` keeps sessions (`Mcp-Session-Id`).

Set up the way Conduit's `--transport http --client-id ... --server-url ...` sets itself up
(`build_phabricator_auth_provider`): FastMCP's `OAuthProxy` in front of Phabricator's
`/oauthserver/auth/` and `/oauthserver/token/`, PKCE not forwarded, issuer and redirect URI
(`<server-url>/auth/callback`) from the server URL, and the Phabricator token behind each FastMCP
token checked with `user.whoami` on every request (`PhabricatorTokenVerifier`: any failure is a
401). The tools are sync functions wrapped like Conduit's `handle_api_errors`: an exception in a
tool (a Phabricator error, a ValueError) comes back as a result (HTTP 200, `isError: false`)
`{"success": false, "error", "error_code", "suggestion"}`, not as an MCP error. Arguments that do
not match a tool's schema (`"task_id": 7`, a number) are refused by FastMCP before the tool runs,
as by the real one: `isError: true` with pydantic's message. The tools call Phabricator with the
user's token as `access_token`:
- `pha_user_whoami()` → `{"success": true, "user": <user.whoami>}`
- `pha_task_get(task_id: str)` ("T7" or "7") → `{"success": true, "task": <maniphest.info>}`
- `pha_task_create(title, description="", owner_phid="")` → `{"success": true, "task": <maniphest.createtask>}`

Needs FASTMCP_HOME pointing at a writable directory (the proxy keeps its state there).
"""

import argparse
import logging
import os
import re
import sys
from functools import wraps

import httpx
from fastmcp import FastMCP
from fastmcp.server.auth import TokenVerifier
from fastmcp.server.auth.auth import AccessToken
from fastmcp.server.auth.oauth_proxy import OAuthProxy
from fastmcp.server.dependencies import get_access_token
from mcp.types import ToolAnnotations

log = logging.getLogger("conduit")

# === the Phabricator client (conduit/client/base.py, OAuth mode) ===


class PhabricatorAPIError(Exception):
    """A failed Conduit API call (conduit.utils.PhabricatorAPIError)."""

    def __init__(self, message, error_code=None, error_info=None):
        super().__init__(message)
        self.error_code = error_code
        self.error_info = error_info


CLIENT_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "User-Agent": "ModelContextProtocol/1.0 (Autonomous; +https://github.com/modelcontextprotocol/servers)",
}


class PhabricatorClient:
    """Calls the Conduit API with an OAuth token sent as `access_token`."""

    def __init__(self, api_url, token):
        self.api_url = api_url
        self.token = token

    def request(self, method, params):
        form = {**params, "access_token": self.token}
        try:
            with httpx.Client(headers=CLIENT_HEADERS, timeout=30.0, follow_redirects=True) as client:
                response = client.post(self.api_url + method, data=form)
            response.raise_for_status()
            data = response.json()
        except httpx.HTTPError as error:
            raise PhabricatorAPIError(f"Network error: {error}") from error
        except ValueError as error:
            raise PhabricatorAPIError(f"Invalid JSON response: {error}") from error
        if data.get("error_code"):
            raise PhabricatorAPIError(f"API Error: {data.get('error_info', 'Unknown error')}",
                                      error_code=data.get("error_code"), error_info=data.get("error_info"))
        return data.get("result", {})

    def whoami(self):
        return self.request("user.whoami", {})

    def get_task(self, task_id):
        return self.request("maniphest.info", {"task_id": task_id})

    def create_task(self, title, description="", owner_phid=""):
        params = {"title": title}
        if description:
            params["description"] = description
        if owner_phid:
            params["ownerPHID"] = owner_phid
        return self.request("maniphest.createtask", params)


# === errors as results (conduit/tools/handlers.py) ===

# Conduit's ErrorCode values; a Phabricator error code is kept only when it is one of them.
ERROR_CODES = {"NETWORK_ERROR", "AUTH_ERROR", "VALIDATION_ERROR", "RATE_LIMIT_ERROR", "NOT_FOUND",
               "RESPONSE_TOO_LARGE", "UNSAFE_RESPONSE_ENCODING", "UNKNOWN_ERROR"}
SUGGESTIONS = {
    "NETWORK_ERROR": "Check your network connection and verify the Phabricator server is accessible",
    "VALIDATION_ERROR": "Provide valid parameters according to the API documentation",
}
DEFAULT_SUGGESTION = "An unexpected error occurred. Please check the logs for details."


def error_code_of(error):
    if isinstance(error, PhabricatorAPIError):
        return error.error_code if error.error_code in ERROR_CODES else "UNKNOWN_ERROR"
    if isinstance(error, (ConnectionError, TimeoutError)):
        return "NETWORK_ERROR"
    if isinstance(error, (ValueError, KeyError)):
        return "VALIDATION_ERROR"
    return "UNKNOWN_ERROR"


def error_result(error):
    """What Conduit's `handle_api_errors` returns for `error`."""
    code = error_code_of(error)
    api_error = isinstance(error, PhabricatorAPIError)
    result = {"success": False,
              "error": str(error) if api_error else f"Parameter validation failed: {error}",
              "error_code": code,
              "suggestion": SUGGESTIONS.get(code, DEFAULT_SUGGESTION)}
    if api_error and error.error_info:
        result["error_info"] = error.error_info
    return result


def handle_api_errors(func):
    """A tool's dict as it is when it has "success", else `{"success": True, "result": ...}`; an
    exception becomes `{"success": False, "error", "error_code", "suggestion"}`."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - every failure is reported as a result
            return error_result(error)
        if isinstance(result, dict) and "success" in result:
            return result
        return {"success": True, "result": result}

    return wrapper


# === authentication (conduit/auth/provider.py) ===


class PhabricatorTokenVerifier(TokenVerifier):
    """Accepts a Phabricator OAuth token when `user.whoami` answers for it (tokens are opaque)."""

    def __init__(self, api_url, scopes):
        super().__init__(required_scopes=scopes)
        self.api_url = api_url

    async def verify_token(self, token):
        whoami_url = self.api_url + "user.whoami"
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=True,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as client:
                response = await client.post(whoami_url, data={"access_token": token})
        except httpx.HTTPError as error:
            log.info("token verification request to %s failed: %s", whoami_url, error)
            return None
        if response.status_code != 200:
            log.info("token verification got HTTP %s from %s", response.status_code, whoami_url)
            return None
        try:
            data = response.json()
        except ValueError:
            log.info("token verification response from %s was not JSON", whoami_url)
            return None
        if data.get("error_code"):
            log.info("token verification rejected by Phabricator: %s", data.get("error_code"))
            return None
        result = data.get("result")
        if not result:
            return None
        return AccessToken(
            token=token,
            client_id=str(result.get("phid", "unknown")),
            scopes=self.required_scopes or [],
            expires_at=None,
            claims={"sub": result.get("phid"), "username": result.get("userName"),
                    "name": result.get("realName"), "whoami": result},
        )


def phabricator_urls(phabricator_url):
    """`(base, api)`: like Conduit, the API is `<url>/api/`, the OAuth server is at the root."""
    base = phabricator_url.rstrip("/")
    if base.endswith("/api"):
        base = base[: -len("/api")]
    return base, base + "/api/"


def build(args):
    base, api_url = phabricator_urls(args.phabricator_url)
    scopes = args.scope.split()
    auth = OAuthProxy(
        upstream_authorization_endpoint=base + "/oauthserver/auth/",
        upstream_token_endpoint=base + "/oauthserver/token/",
        upstream_client_id=args.client_id,
        upstream_client_secret=args.client_secret,
        token_verifier=PhabricatorTokenVerifier(api_url, scopes),
        base_url=args.server_url,
        valid_scopes=scopes,
        forward_pkce=False,
    )
    mcp = FastMCP("Conduit", auth=auth)
    register_tools(mcp, lambda: client_from_oauth_context(api_url))
    return mcp


def client_from_oauth_context(api_url):
    """A client with the Phabricator token the OAuth proxy put in the request context."""
    access = get_access_token()
    if access is None or not access.token:
        raise ValueError("No authenticated Phabricator token in request context. "
                         "The MCP client must complete the OAuth flow first.")
    return PhabricatorClient(api_url, access.token)


# === tools (conduit/main_tools.py) ===


def register_tools(mcp, get_client):
    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    @handle_api_errors
    def pha_user_whoami() -> dict:
        """
        Get the current user's information.

        Returns:
            User information
        """
        return {"success": True, "user": get_client().whoami()}

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    @handle_api_errors
    def pha_task_get(task_id: str) -> dict:
        """
        Get details of a specific Phabricator task

        Args:
            task_id: Task identifier, "T123" or "123".

        Returns:
            Task details
        """
        match = re.match(r"^T?(\d+)$", str(task_id).strip(), re.IGNORECASE)
        if not match:
            return {"success": False, "error": f"Unrecognized task id: {task_id!r}. Use 'T123' or '123'."}
        return {"success": True, "task": get_client().get_task(int(match.group(1)))}

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
    @handle_api_errors
    def pha_task_create(title: str, description: str = "", owner_phid: str = "") -> dict:
        """
        Create a new Phabricator task.

        Args:
            title: Task title
            description: Task description
            owner_phid: PHID of the user to assign this task to

        Returns:
            Created task information
        """
        task = get_client().create_task(title=title, description=description, owner_phid=owner_phid)
        return {"success": True, "task": task}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env = os.environ.get
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server-url", default=env("PHABRICATOR_MCP_SERVER_URL"),
                        help="the public URL (PHABRICATOR_MCP_SERVER_URL)")
    parser.add_argument("--phabricator-url", default=env("PHABRICATOR_URL"),
                        help="Phabricator's URL, with or without /api/ (PHABRICATOR_URL)")
    parser.add_argument("--client-id", default=env("PHABRICATOR_OAUTH_CLIENT_ID"))
    parser.add_argument("--client-secret", default=env("PHABRICATOR_OAUTH_CLIENT_SECRET"))
    parser.add_argument("--scope", default=env("PHABRICATOR_OAUTH_SCOPE") or "whoami maniphest")
    parser.add_argument("--stateless", action=argparse.BooleanOptionalAction, default=True,
                        help="stateless streamable HTTP, no Mcp-Session-Id (default, as Conduit)")
    args = parser.parse_args(argv)
    missing = [name for name in ("server_url", "phabricator_url", "client_id", "client_secret")
               if not getattr(args, name)]
    if missing:
        parser.error(f"missing: {', '.join(missing)} (options or Conduit's environment variables)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    build(args).run(transport="http", host="127.0.0.1", port=args.port, path="/mcp",
                    stateless_http=args.stateless, show_banner=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
