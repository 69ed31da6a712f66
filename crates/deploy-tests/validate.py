#!/usr/bin/env python3
"""Validator for the deploy tests (called by src/lib.rs; reads one JSON request on stdin).

Request: {"kubernetes_versions": ["1.25", ...], "objects": [...], "custom_schemas": {"group/version/Kind": schema},
          "instances": [[instance, schema], ...]}
Reply:   {"objects": [[error, ...] per object], "instances": [[error, ...] per instance]}

Built-in kinds are checked with kubernetes-validate (the Kubernetes OpenAPI schemas it ships) in strict
mode, for every requested version. Custom resources (no schema in kubernetes-validate) are checked
against the custom schemas; a kind with neither is an error. Instances are checked with jsonschema
(Draft 7, what Helm's values.schema.json uses).
"""
import functools
import json
import sys

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
from kubernetes_validate.utils import SchemaNotFoundError

# kubernetes-validate reads and parses the schema files (the definitions are ~2 MB) on every call: keep
# them, the validators only read them.
kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)


def all_errors(validator, instance):
    out = []
    for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        out.append(f"{path}: {e.message}")
    return out


def kubernetes_all_errors(obj, version):
    from referencing import Registry, Resource

    # The same lookup as kubernetes_validate.validate: the newest schema not newer than `version`.
    wanted = kv_utils.major_minor(version)
    chosen = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= wanted][-1]
    api = __import__("re").sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
    schema_dir = f"v{chosen}-local-strict"
    try:
        schema = kv_utils.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{obj['kind'].lower()}-{api}.json", version)
    except FileNotFoundError:
        raise SchemaNotFoundError(version=wanted, kind=obj["kind"], api_version=obj["apiVersion"])
    defs = kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return all_errors(validator, obj)


def check_object(obj, versions, custom):
    errors = []
    gvk = f"{obj.get('apiVersion')}/{obj.get('kind')}"
    if gvk in custom:
        validator = jsonschema.Draft7Validator(custom[gvk])
        return [f"[{gvk} schema] {e}" for e in all_errors(validator, obj)]
    for version in versions:
        try:
            # kubernetes-validate's own entry point first (its verdict is the reference) ...
            kubernetes_validate.validate(obj, version, strict=True)
        except SchemaNotFoundError:
            errors.append(f"[{version}] no schema for {gvk}")
            continue
        except kubernetes_validate.ValidationError:
            # ... then every error, not only the first, with the same schemas.
            errors.extend(f"[{version}] {e}" for e in kubernetes_all_errors(obj, version))
    return errors


def main():
    req = json.load(sys.stdin)
    versions = req.get("kubernetes_versions") or []
    custom = req.get("custom_schemas") or {}
    reply = {"objects": [], "instances": []}
    for obj in req.get("objects") or []:
        reply["objects"].append(check_object(obj, versions, custom))
    for instance, schema in req.get("instances") or []:
        jsonschema.Draft7Validator.check_schema(schema)
        reply["instances"].append(all_errors(jsonschema.Draft7Validator(schema), instance))
    json.dump(reply, sys.stdout)


if __name__ == "__main__":
    main()
