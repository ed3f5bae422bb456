// Preloaded with `node --require` into Node peers that bind every interface (server-everything
// calls `app.listen(PORT)`): a listen() without a host binds 127.0.0.1 instead, so end-to-end tests
// never open a port beyond loopback.
"use strict";
const net = require("node:net");

const listen = net.Server.prototype.listen;
const isPort = (v) => typeof v === "number" || (typeof v === "string" && /^\d+$/.test(v));

net.Server.prototype.listen = function (...args) {
  if (isPort(args[0]) && (args.length === 1 || typeof args[1] === "function")) {
    args.splice(1, 0, "127.0.0.1");
  } else if (args[0] !== null && typeof args[0] === "object" && isPort(args[0].port) && !args[0].host) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
