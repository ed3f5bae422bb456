#!/usr/bin/env python3
"""Validate Kubernetes YAML streams strictly and offline against the schemas of given Kubernetes
versions (kubernetes-validate: unknown fields are errors), reporting every error of every document.

usage: validate_k8s.py [-k VERSION]... [--json] [FILE|-]...

Reads each FILE (`-` or none: stdin) as a `---`-separated YAML stream. For each document and
version the result is `valid`, `invalid` (with every error: field path and message) or
`no-schema`: the kind has no bundled schema (a custom resource such as HTTPRoute or McpServer), so
it was NOT validated; callers decide which such kinds they expect.

Output: a human-readable report on stdout, or with --json the report as JSON on stdout and the
human-readable one on stderr.
Exit status: 0 when no document is invalid, 1 when one is, 2 when the input cannot be read or
parsed (duplicate mapping keys are parse errors) or a version is not supported.

Run it with the Python of e2e/.venv-mcp2 (scripts/setup.sh installs it).
"""

import argparse
import json
import re
import sys

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

DEFAULT_VERSIONS = ["1.30.0", "1.37.0"]
MAX_MESSAGE = 400


class Fatal(Exception):
    """Input that cannot be validated at all (exit status 2)."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keeps timestamps as strings.

    Duplicate keys are silently merged by most parsers (the last one wins), which hides a bug in
    whatever rendered the stream. Timestamps stay strings because Kubernetes' own YAML-to-JSON
    conversion turns them into strings, and every schema field that could hold one is a string.
    """


def _construct_unique_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


def _construct_value(loader, node):
    # A bare `=` scalar (see https://github.com/yaml/pyyaml/issues/89) is a string.
    return str(node.value)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                             _construct_unique_mapping)
StrictLoader.add_constructor("tag:yaml.org,2002:value", _construct_value)
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def field_path(path):
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def describe(error):
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    return f"{field_path(error.absolute_path)}: {message}"


def all_errors(doc, version_validated):
    """Every schema error, not only the first one kubernetes_validate.validate raises.

    Builds the same validator as kubernetes-validate 1.37.0 does (same schema files, registry and
    draft) and iterates over its errors.
    """
    version = next(v for v in kv_utils.all_versions()
                   if kv_utils.major_minor(v) == version_validated)
    schema_dir = f"kubernetes-json-schema/v{version}-local-strict"
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    schema = kv_utils.schema_contents(
        f"{schema_dir}/{doc['kind'].lower()}-{api_version}.json", version)
    definitions = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = referencing.Registry()
    registry = referencing.Resource.from_contents(schema) @ registry
    registry = referencing.Resource.from_contents(definitions) @ registry
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return sorted({describe(error) for error in validator.iter_errors(doc)})


def validate_document(doc, version):
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return {"status": "valid", "errors": []}
    except kubernetes_validate.SchemaNotFoundError:
        return {"status": "no-schema", "errors": []}
    except kubernetes_validate.ValidationError as error:
        try:
            errors = all_errors(doc, error.version)
        except Exception:  # the first error is still a true answer
            errors = []
        return {"status": "invalid", "errors": errors or [describe(error)]}
    except kv_utils.VersionNotSupportedError as error:
        raise Fatal(error.message) from None
    except kubernetes_validate.InvalidSchemaError as error:
        raise Fatal(error.message) from None


def is_object(doc):
    return (isinstance(doc, dict) and isinstance(doc.get("apiVersion"), str)
            and isinstance(doc.get("kind"), str))


def validate_stream(source, text, versions):
    try:
        docs = list(yaml.load_all(text, Loader=StrictLoader))
    except yaml.YAMLError as error:
        raise Fatal(f"{source}: not a valid YAML stream: {error}") from None
    reports, empty = [], 0
    for index, doc in enumerate(docs):
        if doc is None:
            empty += 1
            continue
        metadata = doc.get("metadata") if isinstance(doc, dict) else None
        metadata = metadata if isinstance(metadata, dict) else {}
        report = {
            "source": source,
            "index": index,
            "api_version": doc.get("apiVersion") if isinstance(doc, dict) else None,
            "kind": doc.get("kind") if isinstance(doc, dict) else None,
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "results": {},
        }
        for version in versions:
            if is_object(doc):
                report["results"][version] = validate_document(doc, version)
            else:
                report["results"][version] = {
                    "status": "invalid",
                    "errors": ["<root>: not a Kubernetes object (needs string apiVersion and kind)"],
                }
        reports.append(report)
    return reports, empty


def label(report):
    name = report["name"] or "<no name>"
    if report["namespace"]:
        name = f"{report['namespace']}/{name}"
    return (f"{report['source']}#{report['index']} {report['api_version']} "
            f"{report['kind']} {name}")


def human(reports, empty):
    lines = []
    counts = {"valid": 0, "invalid": 0, "no-schema": 0}
    for report in reports:
        for version, result in report["results"].items():
            counts[result["status"]] += 1
            if result["status"] == "valid":
                lines.append(f"ok       {version}  {label(report)}")
            elif result["status"] == "no-schema":
                lines.append(f"NOT VALIDATED (no schema for this kind) {version}  {label(report)}")
            else:
                lines.append(f"INVALID  {version}  {label(report)}")
                lines.extend(f"    {error}" for error in result["errors"])
    lines.append(f"{len(reports)} documents ({empty} empty): {counts['valid']} valid, "
                 f"{counts['invalid']} invalid, {counts['no-schema']} not validated "
                 "(results per version)")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--kube-version", action="append", dest="versions",
                        help=f"Kubernetes version (repeatable; default {DEFAULT_VERSIONS})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("files", nargs="*", default=["-"], help="YAML files, - for stdin")
    args = parser.parse_args(argv)
    versions = args.versions or DEFAULT_VERSIONS
    try:
        reports, empty = [], 0
        for source in args.files:
            if source == "-":
                text = sys.stdin.read()
                source = "<stdin>"
            else:
                try:
                    with open(source, encoding="utf-8") as file:
                        text = file.read()
                except (OSError, UnicodeDecodeError) as error:
                    raise Fatal(f"cannot read {source}: {error}") from None
            more, more_empty = validate_stream(source, text, versions)
            reports += more
            empty += more_empty
    except Fatal as error:
        print(f"validate_k8s: {error}", file=sys.stderr)
        return 2
    text = human(reports, empty)
    if args.json:
        print(text, file=sys.stderr)
        json.dump({"versions": versions, "documents": reports, "empty_documents": empty},
                  sys.stdout, indent=1)
        print()
    else:
        print(text)
    invalid = any(result["status"] == "invalid"
                  for report in reports for result in report["results"].values())
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
