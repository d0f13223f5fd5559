"""Checks HTTP exchanges against the providers' published API specs.

`SpecCheckingTransport(inner, specs)` wraps any httpx transport (the sandbox's or a real one) and
validates every request and response it can map onto a spec:

- Meta Graph (OpenAPI 3.1) and Hospitable v2 (OpenAPI 3.1): with openapi-core. Meta's spec has many
  templates of the same shape (`/{Version}/{WABA-ID}`, `/{Version}/{Phone-Number-ID}`, ...): the one the
  reconciler means is chosen by name (Phone-Number-ID, then WABA-ID), so `GET /{waba-id}` is checked
  against the phone-number operation (whose schema is loose enough that this passes).
- Nuki (Swagger 2.0, which openapi-core cannot read): request bodies and response bodies are checked
  against the spec's definitions with `jsonschema` (Draft 4); documented status codes are checked; query
  and path parameters are *not* checked.
- Error responses with a status the spec does not document (e.g. Hospitable's 401, 422 and 429) are not
  checked: the specs say nothing about them. Beds24 and 2N have no stored spec.

Specs load lazily, once per `SpecRegistry` (thread-safe); `load_seconds` records how long each took.
`ERRATA` lists where the sandbox follows the real service over a spec that is demonstrably wrong.
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

SPECS_ENV = "TENANTCTL_SPECS_DIR"  # override: check against another copy (e.g. a newer spec version)
# The vendored specs, in the repository (see specs/README.md): any clone can check conformance.
DEFAULT_SPECS_DIR = pathlib.Path(__file__).resolve().parents[1] / "specs"
META_FILE = "meta-whatsapp-business-messaging-api_v23.0.yaml"
HOSPITABLE_FILE = "hospitable-public-api-v2.openapi.json"
NUKI_FILE = "nuki-web-api-4.4.1.swagger.json"

ERRATA = {
    "hospitable GET /properties": "links.next/prev and meta.from/to are null at the ends (Laravel "
                                  "paginator); the spec types them as string/integer",
    "nuki SmartlockAuth.type": "the spec caps `type` at 2, yet documents 13 (keypad code) in the same field",
}


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


@dataclasses.dataclass(frozen=True)
class _OpenApiTarget:
    host_url: str
    path: str  # path the spec knows (server base path included)


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


class _OpenApiSpec:
    """One OpenAPI 3 document plus a matcher from concrete paths to its templates."""

    def __init__(self, document: dict[str, Any], preferred: tuple[str, ...] = ()) -> None:
        # The documents are known; skipping the meta-validation saves seconds on Meta's 1 MB spec.
        self.openapi = OpenAPI.from_dict(_str_keys(document), config=Config(spec_validator_cls=None))  # type: ignore[arg-type]
        self._templates: list[tuple[re.Pattern[str], str, set[str], int]] = []
        for template, item in document["paths"].items():
            regex = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$")
            names = re.findall(r"\{([^}]+)\}", template)
            rank = next((i for i, p in enumerate(preferred) if p in names), len(preferred))
            self._templates.append((regex, template, {m for m in item if m != "parameters"}, rank))

    def candidates(self, path: str, method: str) -> list[tuple[str, dict[str, str]]]:
        found = []
        for regex, template, methods, rank in self._templates:
            m = regex.match(path)
            if m and method.lower() in methods:
                names = re.findall(r"\{([^}]+)\}", template)
                found.append((len(names), rank, template, dict(zip(names, m.groups(), strict=True))))
        found.sort(key=lambda c: (c[0], c[1]))
        return [(template, params) for _, _, template, params in found]


class _NukiSpec:
    def __init__(self, document: dict[str, Any]) -> None:
        definitions = document["definitions"]
        definitions["SmartlockAuth"]["properties"]["type"].pop("maximum", None)  # see ERRATA
        self.definitions = definitions
        self.paths: dict[str, dict[str, Any]] = document["paths"]
        self._templates = sorted(
            ((re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$"), t)
             for t in self.paths),
            key=lambda rt: rt[1].count("{"))

    def operation(self, path: str, method: str) -> dict[str, Any] | None:
        for regex, template in self._templates:
            if regex.match(path):
                return self.paths[template].get(method.lower())
        return None

    def errors(self, schema: dict[str, Any], instance: Any) -> list[str]:
        root = dict(schema, definitions=self.definitions)
        validator = jsonschema.Draft4Validator(root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
        return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {_short(e)}"
                for e in validator.iter_errors(instance)]


class SpecRegistry:
    """The stored specs, loaded on first use and cached."""

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
                doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
            return _OpenApiSpec(doc, preferred=("Phone-Number-ID", "WABA-ID"))
        spec: _OpenApiSpec = self._get("meta", build)
        return spec

    def hospitable(self) -> _OpenApiSpec:
        def build() -> _OpenApiSpec:
            doc = json.loads((self.directory / HOSPITABLE_FILE).read_text())
            _patch_hospitable(doc)
            return _OpenApiSpec(doc)
        spec: _OpenApiSpec = self._get("hospitable", build)
        return spec

    def nuki(self) -> _NukiSpec:
        spec: _NukiSpec = self._get(
            "nuki", lambda: _NukiSpec(json.loads((self.directory / NUKI_FILE).read_text())))
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


def check_exchange(specs: SpecRegistry, request: httpx.Request, response: httpx.Response) -> list[Violation]:
    """Every way this request/response pair breaks its provider's spec (empty: fine or unchecked)."""
    located = _locate(request.url)
    if located is None:
        return []
    provider, path = located
    if provider == "nuki":
        return list(_check_nuki(specs.nuki(), request, response, path))
    spec = specs.meta() if provider == "meta" else specs.hospitable()
    return _check_openapi(provider, spec, request, response, path)


def _check_openapi(provider: str, spec: _OpenApiSpec, request: httpx.Request, response: httpx.Response,
                   path: str) -> list[Violation]:
    host_url = next(h for p, _, _, h in _MOUNTS if p == provider)
    method = request.method
    # Hospitable's server URL ends in /v2, so its templates start after it.
    candidates = spec.candidates(path.removeprefix("/v2") if provider == "hospitable" else path, method)
    if not candidates:
        return [Violation(provider, method, path, "request", "no operation in the spec matches")]
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    content_type = request.headers.get("content-type", "application/json").split(";")[0]
    query = dict(request.url.params.multi_items())
    # Same-shaped templates (`/{Version}/{WABA-ID}`, `/{Version}/{Phone-Number-ID}`, ...) cannot be told
    # apart by URL; the best-ranked one decides (fewest variables, then the preferred names).
    template, params = candidates[0]
    pattern = ("/v2" + template) if provider == "hospitable" else template
    mock_req = MockRequest(host_url, method, path, path_pattern=pattern, args=query, view_args=params,
                           headers=headers, data=request.content or None, content_type=content_type)
    return list(_openapi_errors(provider, spec, mock_req, response, path))


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


def _check_nuki(spec: _NukiSpec, request: httpx.Request, response: httpx.Response,
                path: str) -> Iterator[Violation]:
    method = request.method
    op = spec.operation(path, method)
    if op is None:
        yield Violation("nuki", method, path, "request", "no operation in the spec matches")
        return
    body_param = next((p for p in op.get("parameters", []) if p.get("in") == "body"), None)
    if body_param is not None:
        try:
            body = json.loads(request.content) if request.content else None
        except ValueError:
            yield Violation("nuki", method, path, "request", "body is not JSON")
            body = None
        if body is None and body_param.get("required"):
            yield Violation("nuki", method, path, "request", "required body missing")
        elif body is not None:
            for msg in spec.errors(body_param["schema"], body):
                yield Violation("nuki", method, path, "request", msg)
    documented = op.get("responses", {})
    status = str(response.status_code)
    if status not in documented:
        if response.status_code < 400:
            yield Violation("nuki", method, path, "response", f"undocumented status {status}")
        return
    schema = documented[status].get("schema")
    if schema is None:
        if response.status_code == 204 and response.content:
            yield Violation("nuki", method, path, "response", "204 with a body")
        return
    try:
        payload = response.json()
    except ValueError:
        yield Violation("nuki", method, path, "response", "body is not JSON")
        return
    for msg in spec.errors(schema, payload):
        yield Violation("nuki", method, path, "response", msg)


class SpecCheckingTransport(httpx.BaseTransport):
    """Validates each exchange; records violations in `.violations`, or raises when `strict`."""

    def __init__(self, inner: httpx.BaseTransport, specs: SpecRegistry | None = None, *,
                 strict: bool = False) -> None:
        self.inner = inner
        self.specs = specs or SpecRegistry()
        self.strict = strict
        self.violations: list[Violation] = []
        self.checked = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        found = check_exchange(self.specs, request, response)
        with self._lock:
            self.checked += 1
            self.violations.extend(found)
        if found and self.strict:
            raise SpecViolationError(found)
        return response

    def close(self) -> None:
        self.inner.close()
