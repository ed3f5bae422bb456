#!/usr/bin/env python3
"""What `sluice-operator render` printed, as JSON the tests can read (run it with the Python of
either e2e venv: both have PyYAML).

usage: sluice-operator render -f M.yaml | rendered.py

Reads the YAML stream on stdin and writes one JSON array of its documents (empty documents left
out). A ConfigMap value that is itself a YAML mapping (the sidecar's `config.yaml`) also appears
parsed, under `parsedData.<key>`, so a test can read and adjust the sidecar config without a YAML
parser of its own. Exit status 2 when the input is not YAML.
"""

import json
import sys

import yaml


def main():
    try:
        documents = [d for d in yaml.safe_load_all(sys.stdin.read()) if d is not None]
    except yaml.YAMLError as error:
        print(f"rendered.py: not a YAML stream: {error}", file=sys.stderr)
        return 2
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "ConfigMap":
            parsed = {}
            for key, value in (document.get("data") or {}).items():
                try:
                    loaded = yaml.safe_load(value)
                except yaml.YAMLError:
                    continue
                if isinstance(loaded, dict):
                    parsed[key] = loaded
            document["parsedData"] = parsed
    json.dump(documents, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
