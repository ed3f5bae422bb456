// Preloaded with `node --require` into a Node peer that has no option to send a request header
// (the MCP conformance suite's `server` mode builds its MCP client with no headers): every HTTP
// request the process makes through undici to one origin gets one more header, so the peer can
// pass an authenticating proxy unchanged. Node's global fetch and the `undici` package's
// `request()` (the suite's DNS-rebinding scenario) both send through undici's global dispatcher,
// which this replaces with one that adds the header.
//
// Environment: SLUICE_E2E_INJECT_HEADER="Name: value" (required),
//              SLUICE_E2E_INJECT_HEADER_ORIGIN="http://127.0.0.1:PORT" (required; other origins
//              are left alone, so the credential goes nowhere else).
"use strict";
const { Agent, setGlobalDispatcher } = require("undici");

const header = process.env.SLUICE_E2E_INJECT_HEADER || "";
const origin = process.env.SLUICE_E2E_INJECT_HEADER_ORIGIN || "";
const colon = header.indexOf(":");
if (colon < 1 || !origin) {
  throw new Error(
    "inject-header.cjs needs SLUICE_E2E_INJECT_HEADER='Name: value' and SLUICE_E2E_INJECT_HEADER_ORIGIN",
  );
}
const name = header.slice(0, colon).trim();
const value = header.slice(colon + 1).trim();
const lower = name.toLowerCase();
const target = new URL(origin).origin;

// undici passes headers as an object, a flat [name, value, ...] array, an array of pairs or an
// iterable of pairs; the result is a plain object with the header set exactly once.
function withHeader(headers) {
  const out = {};
  const add = (k, v) => {
    if (String(k).toLowerCase() !== lower) out[k] = v;
  };
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) {
      for (const [k, v] of headers) add(k, v);
    } else {
      for (let i = 0; i + 1 < headers.length; i += 2) add(headers[i], headers[i + 1]);
    }
  } else if (headers && typeof headers[Symbol.iterator] === "function") {
    for (const [k, v] of headers) add(k, v);
  } else if (headers && typeof headers === "object") {
    for (const [k, v] of Object.entries(headers)) add(k, v);
  }
  out[name] = value;
  return out;
}

const injecting = new Agent().compose((dispatch) => (opts, handler) => {
  const to = opts.origin ? new URL(String(opts.origin)).origin : "";
  return dispatch(to === target ? { ...opts, headers: withHeader(opts.headers) } : opts, handler);
});
setGlobalDispatcher(injecting);
