"""Checks HTTP exchanges against the providers' published API specs (vendored in `specs/`).

`SpecCheckingTransport(inner, specs)` wraps any httpx transport (the sandbox's or a real one) and
checks every request and response it can map onto a spec:

- Requests: the operation exists; path and query parameters as documented (an undocumented query
  parameter is a violation); the body is valid and carries no property its schema does not define; a
  Graph `fields=` list names only properties of the object the operation documents as its answer (of each
  item of `data` for a list): the names the reconciler *asks for* are checked, not only what it sends.
- Responses, for every documented status: valid against the response schema, and no property that the
  documented object schemas do not define, at any depth (objects are read as `additionalProperties:
  false`; see `sandbox/spec_schema.py`). Undocumented statuses < 400 are violations; undocumented error
  statuses (Hospitable's 401/422/429, Nuki's error bodies) are not checked: the specs say nothing.
- Meta Graph and Hospitable (OpenAPI 3.1): schemas with openapi-core, plus the checks above. Meta's
  same-shaped templates (`/{Version}/{WABA-ID}`, `/{Version}/{Phone-Number-ID}`, ...) cannot be told
  apart by URL: a `node_kind` callable (the sandbox's `MetaState.node_kind`) names the template variable
  an ID stands for; without it the reconciler's own nodes win (Phone-Number-ID, then WABA-ID).
- Nuki (Swagger 2.0, which openapi-core cannot read): the same checks with `jsonschema` (Draft 4).

Where a spec is silent on something the reconciler needs, `UNDOCUMENTED` (sandbox/spec_allowances.py)
lists it with the public source relied on; each entry is added to the loaded spec (never to the vendored
file), so the check holds the reconciler and the sandbox to that source's shape too, and loading fails
once a new spec version documents the name itself (then drop the entry). `ERRATA` (same module) lists
where the sandbox follows the real service over a spec that is demonstrably wrong. Beds24 and 2N have no
spec.

Specs load lazily, once per `SpecRegistry` (thread-safe); `load_seconds` records how long each took.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.testing import MockRequest, MockResponse

from sandbox.spec_allowances import ERRATA, UNDOCUMENTED, Undocumented, add_undocumented
from sandbox.spec_schema import Resolve, graph_fields, object_fields, resolver, undocumented

__all__ = ["ERRATA", "UNDOCUMENTED", "SpecCheckingTransport", "SpecRegistry", "SpecViolationError", "Undocumented",
           "Violation", "add_undocumented", "check_exchange"]

SPECS_ENV = "TENANTCTL_SPECS_DIR"  # override: check against another copy (e.g. a newer spec version)
# The vendored specs, in the repository (see specs/README.md): any clone can check conformance.
DEFAULT_SPECS_DIR = pathlib.Path(__file__).resolve().parents[1] / "specs"
META_FILE = "meta-whatsapp-business-messaging-api_v23.0.yaml"
HOSPITABLE_FILE = "hospitable-public-api-v2.openapi.json"
NUKI_FILE = "nuki-web-api-4.4.1.swagger.json"

@dataclasses.dataclass(frozen=True)
class Violation:
    provider: str
    method: str
    path: str
    phase: str  # "request" | "response"
    message: str

    def __str__(self) -> str:
        return f"{self.provider} {self.method} {self.path} [{self.phase}]: {self.message}"


class SpecViolationError(Exception):
    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(str(v) for v in violations))
        self.violations = violations


NodeKind = Callable[[str], str | None]


# Spec loading -------------------------------------------------------------------------------------
def _nullable(schema: dict[str, Any]) -> None:
    t = schema.get("type")
    if isinstance(t, str):
        schema["type"] = [t, "null"]
    elif not t:
        schema.clear()


def _patch_hospitable(spec: dict[str, Any]) -> None:
    ok = spec["paths"]["/properties"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    for key in ("next", "prev", "first", "last"):
        _nullable(ok["properties"]["links"]["properties"][key])
    for key in ("from", "to"):
        _nullable(ok["properties"]["meta"]["properties"][key])


def _str_keys(node: Any) -> Any:
    """YAML reads `200:` as an int; OpenAPI tooling wants string keys."""
    if isinstance(node, dict):
        return {str(k): _str_keys(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_str_keys(v) for v in node]
    return node


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$")


class _OpenApiSpec:
    """One OpenAPI 3 document plus a matcher from concrete paths to its templates."""

    def __init__(self, document: dict[str, Any], preferred: tuple[str, ...] = ()) -> None:
        self.document = document  # string keys (see _str_keys)
        self.resolve: Resolve = resolver(self.document)
        # The documents are known; skipping the meta-validation saves seconds on Meta's 1 MB spec.
        self.openapi = OpenAPI.from_dict(self.document, config=Config(spec_validator_cls=None))  # type: ignore[arg-type]
        self._preferred = preferred
        self._templates: list[tuple[re.Pattern[str], str, list[str], set[str]]] = [
            (_template_regex(t), t, re.findall(r"\{([^}]+)\}", t), {m for m in item if m != "parameters"})
            for t, item in self.document["paths"].items()]

    def candidates(self, path: str, method: str, prefer: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Templates matching `path` for `method`, best first: fewest variables, then `prefer`, then the
        spec's preferred variable names."""
        found = []
        for regex, template, names, methods in self._templates:
            m = regex.match(path)
            if m and method.lower() in methods:
                wanted = 0 if prefer is not None and prefer in names else 1
                rank = next((i for i, p in enumerate(self._preferred) if p in names), len(self._preferred))
                found.append((len(names), wanted, rank, template, dict(zip(names, m.groups(), strict=True))))
        found.sort(key=lambda c: c[:3])
        return [(template, params) for *_, template, params in found]

    def operation(self, template: str, method: str) -> dict[str, Any]:
        op: dict[str, Any] = self.document["paths"][template][method.lower()]
        return op

    def parameters(self, template: str, method: str) -> list[dict[str, Any]]:
        item = self.document["paths"][template]
        out = []
        for declared in [*item.get("parameters", []), *self.operation(template, method).get("parameters", [])]:
            param = declared
            while "$ref" in param:
                param = self.resolve(param["$ref"])
            out.append(param)
        return out


class _NukiSpec:
    def __init__(self, document: dict[str, Any]) -> None:
        definitions = document["definitions"]
        definitions["SmartlockAuth"]["properties"]["type"].pop("maximum", None)  # see ERRATA
        self.document = document
        self.resolve: Resolve = resolver(document)
        self.definitions = definitions
        self.paths: dict[str, dict[str, Any]] = document["paths"]
        self._templates = sorted(((_template_regex(t), t) for t in self.paths), key=lambda rt: rt[1].count("{"))

    def operation(self, path: str, method: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
        """(template, operation, path parameters) for a concrete path, literal segments first."""
        for regex, template in self._templates:
            m = regex.match(path)
            if m:
                op = self.paths[template].get(method.lower())
                if op is None:
                    return None
                names = re.findall(r"\{([^}]+)\}", template)
                return template, op, dict(zip(names, m.groups(), strict=True))
        return None

    def errors(self, schema: dict[str, Any], instance: Any) -> list[str]:
        root = dict(schema, definitions=self.definitions)
        validator = jsonschema.Draft4Validator(root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {_short(e)}"
                for e in validator.iter_errors(instance)]


class SpecRegistry:
    """The vendored specs, loaded on first use and cached."""

    def __init__(self, directory: pathlib.Path | str | None = None) -> None:
        self.directory = pathlib.Path(directory or os.environ.get(SPECS_ENV) or DEFAULT_SPECS_DIR)
        self.load_seconds: dict[str, float] = {}
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._cache:
                started = time.perf_counter()
                self._cache[name] = build()
                self.load_seconds[name] = time.perf_counter() - started
            return self._cache[name]

    def meta(self) -> _OpenApiSpec:
        def build() -> _OpenApiSpec:
            with (self.directory / META_FILE).open("rb") as fh:
                doc = _str_keys(yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))  # noqa: S506
            add_undocumented("meta", doc)
            return _OpenApiSpec(doc, preferred=("Phone-Number-ID", "WABA-ID"))
        spec: _OpenApiSpec = self._get("meta", build)
        return spec

    def hospitable(self) -> _OpenApiSpec:
        def build() -> _OpenApiSpec:
            doc = json.loads((self.directory / HOSPITABLE_FILE).read_text())
            _patch_hospitable(doc)
            add_undocumented("hospitable", doc)
            return _OpenApiSpec(doc)
        spec: _OpenApiSpec = self._get("hospitable", build)
        return spec

    def nuki(self) -> _NukiSpec:
        def build() -> _NukiSpec:
            doc = json.loads((self.directory / NUKI_FILE).read_text())
            add_undocumented("nuki", doc)
            return _NukiSpec(doc)
        spec: _NukiSpec = self._get("nuki", build)
        return spec


# Checking -----------------------------------------------------------------------------------------
_MOUNTS = (
    # (provider, sandbox prefix, real host, the host_url handed to openapi-core)
    ("meta", "/meta", "graph.facebook.com", "https://graph.facebook.com"),
    ("hospitable", "/hospitable", "public.api.hospitable.com", "https://public.api.hospitable.com"),
    ("nuki", "/nuki", "api.nuki.io", "https://api.nuki.io"),
)


def _locate(url: httpx.URL) -> tuple[str, str] | None:
    """(provider, path as the real service sees it), for sandbox and real URLs alike."""
    for provider, prefix, host, _ in _MOUNTS:
        if url.host == host:
            return provider, url.path
        if url.path.startswith(prefix + "/"):
            return provider, url.path[len(prefix):]
    return None


def check_exchange(specs: SpecRegistry, request: httpx.Request, response: httpx.Response,
                   node_kind: NodeKind | None = None) -> list[Violation]:
    """Every way this request/response pair breaks its provider's spec (empty: fine or unchecked)."""
    located = _locate(request.url)
    if located is None:
        return []
    provider, path = located
    if provider == "nuki":
        return list(_check_nuki(specs.nuki(), request, response, path))
    spec = specs.meta() if provider == "meta" else specs.hospitable()
    return _check_openapi(provider, spec, request, response, path, node_kind)


def _json_body(content: bytes) -> tuple[bool, Any]:
    """(is JSON, value); an empty body is JSON `None`."""
    if not content:
        return True, None
    try:
        return True, json.loads(content)
    except ValueError:
        return False, None


def _media_schema(node: dict[str, Any], content_type: str) -> Any:
    content = node.get("content") or {}
    media = content.get(content_type) or content.get("application/json") or {}
    return media.get("schema")


def _check_openapi(provider: str, spec: _OpenApiSpec, request: httpx.Request, response: httpx.Response,
                   path: str, node_kind: NodeKind | None) -> list[Violation]:
    host_url = next(h for p, _, _, h in _MOUNTS if p == provider)
    method = request.method
    # Hospitable's server URL ends in /v2, so its templates start after it.
    spec_path = path.removeprefix("/v2") if provider == "hospitable" else path
    segments = spec_path.split("/")
    prefer = node_kind(segments[2]) if node_kind is not None and len(segments) > 2 else None
    candidates = spec.candidates(spec_path, method, prefer)
    if not candidates:
        return [Violation(provider, method, path, "request", "no operation in the spec matches")]
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    content_type = request.headers.get("content-type", "application/json").split(";")[0]
    query = dict(request.url.params.multi_items())
    template, params = candidates[0]
    pattern = ("/v2" + template) if provider == "hospitable" else template
    mock_req = MockRequest(host_url, method, path, path_pattern=pattern, args=query, view_args=params,
                           headers=headers, data=request.content or None, content_type=content_type)
    out = list(_openapi_errors(provider, spec, mock_req, response, path))
    out.extend(Violation(provider, method, path, phase, message)
               for phase, message in _names(provider, spec, template, request, response, content_type))
    return out


def _names(provider: str, spec: _OpenApiSpec, template: str, request: httpx.Request,
           response: httpx.Response, content_type: str) -> Iterator[tuple[str, str]]:
    """What openapi-core leaves unchecked: undocumented query parameters, Graph `fields`, properties."""
    method = request.method
    op = spec.operation(template, method)
    params = spec.parameters(template, method)
    documented = {p["name"] for p in params if p.get("in") == "query"}
    for name in dict.fromkeys(request.url.params.keys()):
        if name not in documented:
            yield "request", f"undocumented query parameter {name!r} (operation {op.get('operationId')})"
    ok = (op.get("responses") or {}).get("200")
    answer = _media_schema(ok, "application/json") if isinstance(ok, dict) else None
    if provider == "meta" and "fields" in documented and "fields" in request.url.params and answer:
        known = object_fields(answer, spec.resolve)
        for name in graph_fields(request.url.params["fields"]):
            if name not in known:
                yield "request", (f"fields: {name!r} is not a property of the object "
                                  f"{op.get('operationId')} answers")
    body_spec = op.get("requestBody")
    is_json, body = _json_body(request.content)
    if isinstance(body_spec, dict) and is_json and body is not None:
        schema = _media_schema(body_spec, content_type)
        if schema is not None:
            for problem in undocumented(schema, body, spec.resolve):
                yield "request", problem
    documented_status = (op.get("responses") or {}).get(str(response.status_code))
    if not isinstance(documented_status, dict):
        return
    ctype = response.headers.get("content-type", "application/json").split(";")[0]
    schema = _media_schema(documented_status, ctype)
    is_json, payload = _json_body(response.content)
    if schema is not None and is_json and payload is not None:
        for problem in undocumented(schema, payload, spec.resolve):
            yield "response", problem


def _openapi_errors(provider: str, spec: _OpenApiSpec, mock_req: MockRequest, response: httpx.Response,
                    path: str) -> Iterator[Violation]:
    method = mock_req.method.upper()
    try:
        for err in spec.openapi.iter_request_errors(mock_req):
            yield Violation(provider, method, path, "request", _describe(err))
    except PathNotFound as exc:
        yield Violation(provider, method, path, "request", str(exc))
        return
    ctype = response.headers.get("content-type", "application/json").split(";")[0]
    mock_resp = MockResponse(response.content, status_code=response.status_code,
                             headers=dict(response.headers), content_type=ctype)
    try:
        errors = list(spec.openapi.iter_response_errors(mock_req, mock_resp))
    except ResponseNotFound:
        errors = []
    for err in errors:
        if isinstance(err, ResponseNotFound):
            if response.status_code < 400:
                yield Violation(provider, method, path, "response",
                                f"undocumented status {response.status_code}")
            continue
        yield Violation(provider, method, path, "response", _describe(err))


def _describe(err: BaseException) -> str:
    """The schema errors only: openapi-core's own message echoes the whole body, secrets included."""
    cause = err.__cause__
    details = getattr(cause, "schema_errors", None) or getattr(err, "schema_errors", None)
    if details:
        return f"{type(err).__name__}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {_short(e)}" for e in details)
    return type(err).__name__ + (f": {type(cause).__name__}" if cause else "")


def _short(error: jsonschema.ValidationError) -> str:
    # "'x' is not of type 'integer'" is fine; for objects say which rule failed, not the value.
    return error.message if not isinstance(error.instance, dict | list) else f"fails '{error.validator}'"


_SWAGGER_KEYWORDS = ("type", "format", "enum", "minimum", "maximum", "pattern", "minLength", "maxLength")


def _parameter_errors(param: dict[str, Any], raw: str) -> list[str]:
    """A Swagger 2.0 path/query parameter's value (always text on the wire) against its declaration."""
    value: Any = raw
    kind = param.get("type")
    try:
        if kind == "integer":
            value = int(raw)
        elif kind == "number":
            value = float(raw)
        elif kind == "boolean":
            value = {"true": True, "false": False}[raw]
    except (ValueError, KeyError):
        return [f"{param['in']} parameter {param['name']!r}: {raw!r} is not of type {kind!r}"]
    schema = {k: param[k] for k in _SWAGGER_KEYWORDS if k in param}
    validator = jsonschema.Draft4Validator(schema)
    return [f"{param['in']} parameter {param['name']!r}: {e.message}" for e in validator.iter_errors(value)]


def _check_nuki(spec: _NukiSpec, request: httpx.Request, response: httpx.Response,
                path: str) -> Iterator[Violation]:
    method = request.method

    def violation(phase: str, message: str) -> Violation:
        return Violation("nuki", method, path, phase, message)

    found = spec.operation(path, method)
    if found is None:
        yield violation("request", "no operation in the spec matches")
        return
    _, op, path_values = found
    declared = {(p.get("in"), p.get("name")): p for p in op.get("parameters", [])}
    for name, raw in path_values.items():
        param = declared.get(("path", name))
        if param is None:
            yield violation("request", f"path parameter {name!r} is not declared")
        else:
            yield from (violation("request", m) for m in _parameter_errors(param, raw))
    for name, raw in request.url.params.multi_items():
        param = declared.get(("query", name))
        if param is None:
            yield violation("request", f"undocumented query parameter {name!r} (operation {op.get('operationId')})")
        else:
            yield from (violation("request", m) for m in _parameter_errors(param, raw))
    for (where, name), param in declared.items():
        if where == "query" and param.get("required") and name not in request.url.params:
            yield violation("request", f"required query parameter {name!r} missing")
    body_param = next((p for p in op.get("parameters", []) if p.get("in") == "body"), None)
    if body_param is not None:
        is_json, body = _json_body(request.content)
        if not is_json:
            yield violation("request", "body is not JSON")
        elif body is None and body_param.get("required"):
            yield violation("request", "required body missing")
        elif body is not None:
            for msg in [*spec.errors(body_param["schema"], body),
                        *undocumented(body_param["schema"], body, spec.resolve)]:
                yield violation("request", msg)
    elif request.content:
        yield violation("request", "a body where the operation takes none")
    documented = op.get("responses", {})
    status = str(response.status_code)
    if status not in documented:
        if response.status_code < 400:
            yield violation("response", f"undocumented status {status}")
        return
    schema = documented[status].get("schema")
    if schema is None:
        # Error statuses carry Nuki's exception body, on which the spec is silent.
        if response.content and response.status_code < 400:
            yield violation("response", f"{status} with a body, where the spec documents none")
        return
    is_json, payload = _json_body(response.content)
    if not is_json:
        yield violation("response", "body is not JSON")
        return
    for msg in [*spec.errors(schema, payload), *undocumented(schema, payload, spec.resolve)]:
        yield violation("response", msg)


class SpecCheckingTransport(httpx.BaseTransport):
    """Checks each exchange; records violations in `.violations`, or raises when `strict`.

    `node_kind(id)` may name the Graph template variable an ID stands for ("WABA-ID", ...): the
    sandbox's `MetaState.node_kind` knows, a real Graph does not say.
    """

    def __init__(self, inner: httpx.BaseTransport, specs: SpecRegistry | None = None, *,
                 strict: bool = False, node_kind: NodeKind | None = None) -> None:
        self.inner = inner
        self.specs = specs or SpecRegistry()
        self.strict = strict
        self.node_kind = node_kind
        self.violations: list[Violation] = []
        self.checked = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        found = check_exchange(self.specs, request, response, self.node_kind)
        with self._lock:
            self.checked += 1
            self.violations.extend(found)
        if found and self.strict:
            raise SpecViolationError(found)
        return response

    def close(self) -> None:
        self.inner.close()
