#!/usr/bin/env python3
"""The Helm SDK (helm-python-sdk: Helm v4's Go SDK) for the chart tests, answering in JSON.

usage:
  chart_helm.py render CHART [-f VALUES.yaml]... [--set-json JSON] [--name N] [--namespace NS]
      {"manifests": {template path: text}, "notes": text | null,
       "objects": [{"source": template path, "object": {...}}]}
      Rendered as `helm install` would (is_install, values checked against values.schema.json).
      The objects are parsed with validate_k8s.py's strict loader (duplicate keys are errors).
  chart_helm.py lint CHART --kube-version V [-f VALUES.yaml]... [--set-json JSON]
      {"messages": [{"severity": 0-3, "path", "error"}], "errors": [...]}   (lint --strict)
  chart_helm.py check-values CHART [-f VALUES.yaml]... [--set-json JSON]
      {"valid": bool, "error": message | null}: the chart's default values merged with these,
      checked against values.schema.json, as `helm install` does before rendering.
  chart_helm.py refusals CHART --cases JSON
      [{"schema_error": message | null, "render_error": message | null}] for each values object
      of the JSON array: what check-values and render say, with the SDK loaded once.
  chart_helm.py show CHART
      {"metadata": Chart.yaml, "values": values.yaml, "schema": values.schema.json,
       "crds": {file name: text}}
  chart_helm.py yaml-to-json
      A YAML stream on stdin as a JSON array of its non-empty documents (strict loader).

Exit status: 0 with the JSON answer on stdout (a refused value or a lint finding is an answer),
2 when the request itself cannot be carried out (message on stderr).

Run it with the Python of e2e/.venv-mcp2 (scripts/setup.sh installs it).
"""

import argparse
import json
import os
import sys

import helm_python as helm
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from validate_k8s import StrictLoader  # noqa: E402  (same directory)


class Fatal(Exception):
    """A request that cannot be carried out (exit status 2)."""


def load_values(files, set_json):
    """The user-supplied values: each file merged over the previous, then --set-json on top."""
    values = {}
    for path in files or []:
        try:
            with open(path, encoding="utf-8") as file:
                loaded = yaml.load(file, Loader=StrictLoader)
        except (OSError, yaml.YAMLError) as error:
            raise Fatal(f"cannot read values file {path}: {error}") from None
        if loaded is None:
            continue
        if not isinstance(loaded, dict):
            raise Fatal(f"values file {path} is not a mapping")
        values = merge(values, loaded)
    if set_json:
        extra = json.loads(set_json)
        if not isinstance(extra, dict):
            raise Fatal("--set-json must be a JSON object")
        values = merge(values, extra)
    return values


def merge(base, over):
    """Helm's merge of user values: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_chart(path):
    try:
        return helm.Chart.load(path)
    except helm.HelmError as error:
        raise Fatal(f"cannot load the chart {path}: {error}") from None


def render(args):
    values = load_values(args.values, args.set_json)
    with load_chart(args.chart) as chart:
        try:
            manifests = chart.render(values, name=args.name, namespace=args.namespace,
                                     is_install=True)
        except helm.HelmError as error:
            return {"error": str(error), "kind": type(error).__name__}
    notes = None
    rendered = {}
    objects = []
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("/NOTES.txt"):
            notes = text
            continue
        rendered[path] = text
        try:
            docs = list(yaml.load_all(text, Loader=StrictLoader))
        except yaml.YAMLError as error:
            raise Fatal(f"{path} rendered YAML that does not parse: {error}") from None
        objects += [{"source": path, "object": doc} for doc in docs if doc is not None]
    return {"manifests": rendered, "notes": notes, "objects": objects}


def lint(args):
    values = load_values(args.values, args.set_json)
    report = helm.lint(args.chart, values, strict=True, kube_version=args.kube_version)
    return {"messages": report.get("messages") or [], "errors": report.get("errors") or []}


def check_values(args):
    values = load_values(args.values, args.set_json)
    with load_chart(args.chart) as chart:
        try:
            # What `helm install` checks: the chart's defaults with the user's values on top.
            chart.validate_schema(merge(chart.values, values))
        except helm.HelmValuesError as error:
            return {"valid": False, "error": str(error)}
    return {"valid": True, "error": None}


def refusals(args):
    cases = json.loads(args.cases)
    if not isinstance(cases, list) or not all(isinstance(case, dict) for case in cases):
        raise Fatal("--cases must be a JSON array of objects")
    answers = []
    with load_chart(args.chart) as chart:
        for values in cases:
            answer = {"schema_error": None, "render_error": None}
            try:
                chart.validate_schema(merge(chart.values, values))
            except helm.HelmValuesError as error:
                answer["schema_error"] = str(error)
            try:
                chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
            except helm.HelmError as error:
                answer["render_error"] = str(error)
            answers.append(answer)
    return answers


def show(args):
    with load_chart(args.chart) as chart:
        # Each CRD as Helm loaded it from the chart's crds/: {name: "crds/x.yaml", data: text}.
        crds = {os.path.basename(crd["name"]): crd["data"] for crd in chart.crds or []}
        return {"metadata": chart.metadata, "values": chart.values, "schema": chart.schema,
                "crds": crds}


def yaml_to_json(_args):
    try:
        docs = list(yaml.load_all(sys.stdin.read(), Loader=StrictLoader))
    except yaml.YAMLError as error:
        raise Fatal(f"stdin is not a YAML stream: {error}") from None
    return [doc for doc in docs if doc is not None]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def with_values(command):
        command.add_argument("chart")
        command.add_argument("-f", "--values", action="append", help="a values file")
        command.add_argument("--set-json", help="values as a JSON object, applied last")
        return command

    command = with_values(commands.add_parser("render"))
    command.add_argument("--name", default="sluice")
    command.add_argument("--namespace", default="sluice-system")
    command.set_defaults(run=render)
    command = with_values(commands.add_parser("lint"))
    command.add_argument("--kube-version", required=True)
    command.set_defaults(run=lint)
    with_values(commands.add_parser("check-values")).set_defaults(run=check_values)
    command = commands.add_parser("refusals")
    command.add_argument("chart")
    command.add_argument("--cases", required=True, help="a JSON array of values objects")
    command.add_argument("--name", default="sluice")
    command.add_argument("--namespace", default="sluice-system")
    command.set_defaults(run=refusals)
    command = commands.add_parser("show")
    command.add_argument("chart")
    command.set_defaults(run=show)
    commands.add_parser("yaml-to-json").set_defaults(run=yaml_to_json)

    args = parser.parse_args(argv)
    try:
        answer = args.run(args)
    except Fatal as error:
        print(f"chart_helm: {error}", file=sys.stderr)
        return 2
    json.dump(answer, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
