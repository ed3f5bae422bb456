#!/usr/bin/env python3
"""An upstream like Conduit in OAuth-proxy mode, built with the `fastmcp` package (run it with the
Python of e2e/.venv-mcp1).

usage: conduit_oauth.py --port P [--server-url URL] [--phabricator-url URL] [--client-id ID]
                        [--client-secret SECRET] [--scope "whoami maniphest"]

Each option defaults to Conduit's own environment variable, so the env a rendered Deployment
gives Conduit can be handed over as it is: PHABRICATOR_MCP_SERVER_URL, PHABRICATOR_URL (with or
without its `/api/`), PHABRICATOR_OAUTH_CLIENT_ID, PHABRICATOR_OAUTH_CLIENT_SECRET,
PHABRICATOR_OAUTH_SCOPE.

Set up the way Conduit's `--transport http --client-id ... --server-url ...` sets itself up:
FastMCP's `OAuthProxy` in front of Phabricator's `/oauthserver/auth/` and `/oauthserver/token/`,
PKCE not forwarded, issuer and redirect URI (`<server-url>/auth/callback`) from the server URL, and
the Phabricator bearer behind each FastMCP token checked with `user.whoami` on every request. Two
tools call Phabricator with that bearer (`access_token=`), as Conduit's do: `pha_user_whoami`
(user.whoami) and `pha_task_get` (maniphest.info).

Needs FASTMCP_HOME pointing at a writable directory (the proxy keeps its state there); binds
127.0.0.1 only.
"""

import argparse
import logging
import os
import sys

import httpx
from fastmcp import FastMCP
from fastmcp.server.auth import TokenVerifier
from fastmcp.server.auth.auth import AccessToken
from fastmcp.server.auth.oauth_proxy import OAuthProxy
from fastmcp.server.dependencies import get_access_token

log = logging.getLogger("conduit-oauth-fixture")


async def call_conduit(api_url, method, token, **params):
    """One Conduit API call with an OAuth bearer: the envelope's result, or an error."""
    form = {"access_token": token, **{k: str(v) for k, v in params.items()}}
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(api_url + method, data=form)
    response.raise_for_status()
    envelope = response.json()
    if envelope.get("error_code"):
        raise RuntimeError(f"{method}: {envelope['error_code']}: {envelope.get('error_info')}")
    return envelope["result"]


class WhoamiVerifier(TokenVerifier):
    """Accepts a Phabricator OAuth token when `user.whoami` answers for it (tokens are opaque)."""

    def __init__(self, api_url, scopes):
        super().__init__(required_scopes=scopes)
        self.api_url = api_url

    async def verify_token(self, token):
        try:
            user = await call_conduit(self.api_url, "user.whoami", token)
        except (httpx.HTTPError, RuntimeError, ValueError) as error:
            log.info("token refused: %s", error)
            return None
        if not user:
            return None
        return AccessToken(
            token=token,
            client_id=str(user.get("phid")),
            scopes=self.required_scopes or [],
            expires_at=None,
            claims={"sub": user.get("phid"), "username": user.get("userName")},
        )


def build(args):
    # Like Conduit: the API is `<url>/api/`, the OAuth server lives at the site's root.
    base = args.phabricator_url.rstrip("/")
    if base.endswith("/api"):
        base = base[: -len("/api")]
    api_url = base + "/api/"
    scopes = args.scope.split()
    auth = OAuthProxy(
        upstream_authorization_endpoint=base + "/oauthserver/auth/",
        upstream_token_endpoint=base + "/oauthserver/token/",
        upstream_client_id=args.client_id,
        upstream_client_secret=args.client_secret,
        token_verifier=WhoamiVerifier(api_url, scopes),
        base_url=args.server_url,
        valid_scopes=scopes,
        forward_pkce=False,
    )
    mcp = FastMCP("conduit-oauth-fixture", auth=auth)

    async def bearer():
        access = get_access_token()
        if access is None or not access.token:
            raise RuntimeError("no Phabricator token in the request context")
        return access.token

    @mcp.tool
    async def pha_user_whoami() -> dict:
        """The Phabricator user behind the caller's OAuth token (user.whoami)."""
        return await call_conduit(api_url, "user.whoami", await bearer())

    @mcp.tool
    async def pha_task_get(task_id: int) -> dict:
        """A Maniphest task (maniphest.info)."""
        return await call_conduit(api_url, "maniphest.info", await bearer(), task_id=task_id)

    return mcp


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
    args = parser.parse_args(argv)
    missing = [name for name in ("server_url", "phabricator_url", "client_id", "client_secret")
               if not getattr(args, name)]
    if missing:
        parser.error(f"missing: {', '.join(missing)} (options or Conduit's environment variables)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    build(args).run(transport="http", host="127.0.0.1", port=args.port, path="/mcp",
                    stateless_http=True, show_banner=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
