"""The Kubernetes API through the official client — the only module that imports ``kubernetes``.

Objects cross this boundary as raw JSON dicts (exactly what the API server sent, so hashes of
a pod template are computed on the server's canonical form), never as the client's models.

* Every request runs off the event loop (``asyncio.to_thread``) with an explicit
  ``_request_timeout``; watch streams are long blocking reads, so they run on a dedicated
  thread pool (``Kube.offload_stream``) sized for them and never starve the default executor.
* urllib3's own retries are off: callers retry with their own backoff (the informers do).
* Built-in kinds are requested raw through the ``ApiClient`` (``Kube._raw``), custom ones
  through ``CustomObjectsApi``: the generated ``CoreV1Api`` / ``AppsV1Api`` / ... classes import
  a pydantic model for every kind of their group, 10-14 MB of resident memory each
  (``make bench``'s ``idle_rss``: the watcher went from 99 to 72 MB).
* Errors are translated here, with the original as ``__cause__``::

      ApiException 404                 → errors.NotFound
      ApiException 409                 → errors.Conflict
      ApiException 410                 → Expired (a Conflict: resourceVersion too old, re-list)
      ApiException 400 / 422           → errors.InvalidInput (the server's message)
      ApiException 401 / 403           → errors.PermanentError
      ApiException 405                 → errors.Unsupported
      ApiException 429 / 5xx / other   → errors.Unavailable
      urllib3 timeouts                 → errors.Timeout
      urllib3 / socket errors          → errors.Unavailable
      kubeconfig / in-cluster problems → errors.InvalidInput
      impossible namespace or name     → InvalidName (InvalidInput and NotFound), no request
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib.metadata
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from libs import errors, logs

log = logging.getLogger(__name__)

Obj = dict[str, Any]
T = TypeVar("T")


class Expired(errors.Conflict):
    """410 Gone: the resourceVersion is older than the server's history; list again."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """A kind of object. ``singular`` (snake case) marks a built-in kind, requested raw under
    ``/api`` or ``/apis/<group>``; custom resources leave it empty (``CustomObjectsApi``)."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        return bool(self.singular)


CANARIES = Resource("flagger.app", "v1beta1", "Canary", "canaries")
DEPLOYMENTS = Resource("apps", "v1", "Deployment", "deployments", "deployment")
CONFIGMAPS = Resource("", "v1", "ConfigMap", "configmaps", "config_map")
SECRETS = Resource("", "v1", "Secret", "secrets", "secret")
EVENTS = Resource("", "v1", "Event", "events", "event")
ALERT_PROVIDERS = Resource("flagger.app", "v1beta1", "AlertProvider", "alertproviders")
SERVICES = Resource("", "v1", "Service", "services", "service")
HPAS = Resource(
    "autoscaling",
    "v2",
    "HorizontalPodAutoscaler",
    "horizontalpodautoscalers",
    "horizontal_pod_autoscaler",
)
APISIX_ROUTES = Resource("apisix.apache.org", "v2", "ApisixRoute", "apisixroutes")
APISIX_UPSTREAMS = Resource("apisix.apache.org", "v2", "ApisixUpstream", "apisixupstreams")


@dataclasses.dataclass(frozen=True)
class Config:
    kubeconfig: str = ""  # path; empty = in-cluster service account
    request_timeout_s: float = 10.0  # one request (list, get, create), and a watch's connect
    max_streams: int = 64  # watch streams open at once (threads of the stream pool)
    setting: str = "SLUICE_KUBECONFIG"  # where ``kubeconfig`` came from, for error messages
    # who writes: the User-Agent's product, which the API server records as the field manager
    # of every write (``kubectl get -o yaml --show-managed-fields``) and in its audit log
    agent: str = "sluice"


def in_cluster() -> bool:
    """Whether this process runs in a pod (the service-account environment is there)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


# ----------------------------------------------------------------------------- names

MAX_NAMESPACE_CHARS = 63
MAX_NAME_CHARS = 253
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_NAMESPACE_RE = re.compile(_LABEL)
_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_EXPECTED_NAMESPACE = (
    f"a DNS-1123 label (lowercase letters, digits and '-') of at most {MAX_NAMESPACE_CHARS} "
    "characters"
)
_EXPECTED_NAME = (
    "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.') of at most "
    f"{MAX_NAME_CHARS} characters"
)


class InvalidName(errors.InvalidInput, errors.NotFound):
    """A namespace or name no object can have: refused before any request (a request for it
    could only fail, and a name megabytes long would become a URL as long). Also a
    ``NotFound``, as the API server answers a read of it."""


def check_name(what: str, namespace: str, name: str | None) -> None:
    """Refuse a namespace that is not a DNS-1123 label or a name that is not a DNS-1123
    subdomain (what Kubernetes requires of every kind Sluice reads or writes); ``name`` None:
    the server generates it."""
    for field, value, limit, pattern, expected in (
        ("namespace", namespace, MAX_NAMESPACE_CHARS, _NAMESPACE_RE, _EXPECTED_NAMESPACE),
        ("name", name, MAX_NAME_CHARS, _NAME_RE, _EXPECTED_NAME),
    ):
        if value is not None and (len(value) > limit or not pattern.fullmatch(value)):
            raise InvalidName(
                f"{logs.clip(what)}: metadata.{field}: expected {expected}, "
                f"got {logs.clip(repr(value))} ({len(value)} characters)",
                path=f"metadata.{field}",
                expected=expected,
            )


# ----------------------------------------------------------------------------- errors


def _server_message(exc: ApiException) -> str:
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return body[:500]
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return str(exc.reason or "")


def translate(what: str, exc: BaseException, timeout_s: float) -> errors.SluiceError | None:
    """The Sluice error for a client exception, or None when it is not the client's."""
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = f"{what}: {_server_message(exc)}"
        if status == 404:
            return errors.NotFound(message)
        if status == 409:
            return errors.Conflict(message)
        if status == 410:
            return Expired(message)
        if status in (400, 422):
            return errors.InvalidInput(message, expected=_server_message(exc))
        if status in (401, 403):
            return errors.PermanentError(f"{message} (HTTP {status}: check the RBAC rules)")
        if status == 405:
            return errors.Unsupported(message)
        return errors.Unavailable(f"{message} (HTTP {status})")
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        inner = translate(what, exc.reason, timeout_s)
        if inner is not None:
            return inner
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError subclass
        return errors.Unavailable(f"{what}: cannot connect: {exc}")
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return errors.Timeout(f"{what}: no answer within {timeout_s}s")
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return errors.Unavailable(f"{what}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):  # an answer that is not JSON
        return errors.Unavailable(f"{what}: undecodable answer: {exc}")
    return None


@contextlib.contextmanager
def kube_errors(what: str, timeout_s: float) -> Iterator[None]:
    """Translate client exceptions raised inside into ``libs.errors`` (``from`` the original)."""
    try:
        yield
    except errors.SluiceError:
        raise
    except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        translated = translate(what, exc, timeout_s)
        if translated is None:
            raise
        raise translated from exc


# ----------------------------------------------------------------------------- watch streams


class WatchStream:
    """One watch response: a blocking iterator of raw events, closable from another thread."""

    def __init__(self, response: Any, what: str, timeout_s: float) -> None:
        self._response = response
        self._what = what
        self._timeout_s = timeout_s

    def __iter__(self) -> Iterator[Obj]:
        with kube_errors(self._what, self._timeout_s):
            buffer = b""
            for chunk in self._response.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event

    def close(self) -> None:
        """Unblock a reader in another thread and drop the connection (idempotent)."""
        with contextlib.suppress(Exception):
            self._response.shutdown()
        with contextlib.suppress(Exception):
            self._response.close()
        with contextlib.suppress(Exception):
            self._response.release_conn()


# ----------------------------------------------------------------------------- the client


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Obj]
    resource_version: str


class Kube:
    """Raw access to the API server. Build it with ``await Kube.connect(config)``."""

    def __init__(self, api: client.ApiClient, cfg: Config) -> None:
        self._api = api
        self.cfg = cfg
        self._apis: dict[str, Any] = {}
        self._streams = concurrent.futures.ThreadPoolExecutor(
            max_workers=cfg.max_streams, thread_name_prefix="kube-watch"
        )

    @classmethod
    async def connect(cls, cfg: Config) -> Kube:
        """Load the kubeconfig (or the in-cluster service account); no request is made yet."""
        return cls(await asyncio.to_thread(_load_client, cfg), cfg)

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    async def close(self) -> None:
        self._streams.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._api.close)

    # --- calls ---

    def _method(self, resource: Resource, verb: str, namespaced: bool) -> tuple[Any, list[Any]]:
        """The client method for a verb and the leading positional arguments it needs."""
        if resource.builtin:
            return self._builtin_method(resource, verb, namespaced), []
        api_name = "CustomObjectsApi"
        custom_args = [resource.group, resource.version]
        scope = "namespaced" if namespaced else "cluster"
        name = f"{verb}_{scope}_custom_object"
        api = self._apis.get(api_name)
        if api is None:
            api = self._apis[api_name] = getattr(client, api_name)(self._api)
        return getattr(api, name), custom_args

    def _builtin_method(
        self, resource: Resource, verb: str, namespaced: bool
    ) -> Callable[..., Any]:
        """A call taking the generated client's arguments for a built-in kind (``get``:
        name, namespace; ``create``: namespace, body; ``patch`` / ``replace``: name,
        namespace, body; ``list``: namespace when namespaced) made with the ``ApiClient``
        itself and answered raw. The generated ``CoreV1Api`` / ``AppsV1Api`` classes import a
        pydantic model for every kind of their group, about 25 MB of resident memory per
        process that raw JSON never uses."""
        prefix = f"/apis/{resource.group}" if resource.group else "/api"
        http_method = _HTTP_METHODS[verb]

        def call(
            *args: Any,
            _preload_content: bool = False,
            _request_timeout: Any = None,
            _content_type: str | None = None,
            **query: Any,
        ) -> Any:
            name: str | None = None
            if verb in ("get", "patch", "replace"):
                name, namespace, *rest = args
            elif verb == "create":
                namespace, *rest = args
            else:
                namespace, rest = (args[0] if namespaced else None), []
            path = f"{prefix}/{resource.version}"
            if namespace is not None:
                path += f"/namespaces/{urllib.parse.quote(namespace, safe='')}"
            path += f"/{resource.plural}"
            if name is not None:
                path += f"/{urllib.parse.quote(name, safe='')}"
            return self._raw(
                http_method, path, query, rest[0] if rest else None, _content_type, _request_timeout
            )

        return call

    def _raw(
        self,
        method: str,
        path: str,
        query: dict[str, Any],
        body: Obj | None,
        content_type: str | None,
        timeout: Any,
    ) -> Any:
        """One request as the generated methods make it; the urllib3 response, unread."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=[(_camel(k), v) for k, v in query.items() if v is not None],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*params, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response

    def _call(self, what: str, fn: Callable[[], Any], timeout_s: float) -> Obj:
        with kube_errors(what, timeout_s):
            response = fn()
            try:
                data = json.loads(response.data)
            finally:
                response.release_conn()
        if not isinstance(data, dict):
            raise errors.Unavailable(f"{what}: expected a JSON object, got {type(data).__name__}")
        return data

    async def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        check_name(f"reading {resource.kind}", namespace, name)
        method, args = self._method(resource, "get", True)
        timeout = self.cfg.request_timeout_s
        if resource.builtin:
            call_args = [name, namespace]
        else:
            call_args = [*args, namespace, resource.plural, name]
        return await asyncio.to_thread(
            self._call,
            f"reading {resource.kind} {namespace}/{name}",
            lambda: method(*call_args, _preload_content=False, _request_timeout=timeout),
            timeout,
        )

    async def create(self, resource: Resource, namespace: str, body: Obj) -> Obj:
        """Create an object. Custom resources go as raw JSON; built-in kinds pass through the
        client's models (enough for the simple objects Sluice writes)."""
        check_name(f"creating {resource.kind}", namespace, body.get("metadata", {}).get("name"))
        method, args = self._method(resource, "create", True)
        timeout = self.cfg.request_timeout_s
        call_args = (
            [namespace, body] if resource.builtin else [*args, namespace, resource.plural, body]
        )
        name = body.get("metadata", {}).get("name", "?")
        return await asyncio.to_thread(
            self._call,
            f"creating {resource.kind} {namespace}/{name}",
            lambda: method(*call_args, _preload_content=False, _request_timeout=timeout),
            timeout,
        )

    async def patch(self, resource: Resource, namespace: str, name: str, body: Obj) -> Obj:
        """A JSON merge patch (RFC 7386); put ``metadata.resourceVersion`` in ``body`` to make
        it conditional (a stale one is a ``Conflict``)."""
        check_name(f"patching {resource.kind}", namespace, name)
        method, args = self._method(resource, "patch", True)
        timeout = self.cfg.request_timeout_s
        call_args = (
            [name, namespace, body]
            if resource.builtin
            else [*args, namespace, resource.plural, name, body]
        )
        return await asyncio.to_thread(
            self._call,
            f"patching {resource.kind} {namespace}/{name}",
            lambda: method(
                *call_args,
                _preload_content=False,
                _request_timeout=timeout,
                _content_type="application/merge-patch+json",
            ),
            timeout,
        )

    async def replace(self, resource: Resource, namespace: str, name: str, body: Obj) -> Obj:
        """Replace a whole object (PUT). ``body`` should carry the ``metadata.resourceVersion``
        it was read at: the server refuses a stale one with a ``Conflict``."""
        check_name(f"replacing {resource.kind}", namespace, name)
        method, args = self._method(resource, "replace", True)
        timeout = self.cfg.request_timeout_s
        call_args = (
            [name, namespace, body]
            if resource.builtin
            else [*args, namespace, resource.plural, name, body]
        )
        return await asyncio.to_thread(
            self._call,
            f"replacing {resource.kind} {namespace}/{name}",
            lambda: method(*call_args, _preload_content=False, _request_timeout=timeout),
            timeout,
        )

    async def patch_status(self, resource: Resource, namespace: str, name: str, body: Obj) -> Obj:
        """A JSON merge patch of the ``status`` subresource; ``metadata.resourceVersion`` in
        ``body`` makes it a compare-and-set (a stale one is a ``Conflict``)."""
        if resource.builtin:
            raise errors.Unsupported(f"patching the status of {resource.kind} is not needed")
        check_name(f"patching the status of {resource.kind}", namespace, name)
        api = self._apis.get("CustomObjectsApi")
        if api is None:
            api = self._apis["CustomObjectsApi"] = client.CustomObjectsApi(self._api)
        timeout = self.cfg.request_timeout_s
        return await asyncio.to_thread(
            self._call,
            f"patching the status of {resource.kind} {namespace}/{name}",
            lambda: api.patch_namespaced_custom_object_status(
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                name,
                body,
                _preload_content=False,
                _request_timeout=timeout,
                _content_type="application/merge-patch+json",
            ),
            timeout,
        )

    def _list_call(self, resource: Resource, namespace: str | None, **query: Any) -> Any:
        method, args = self._method(resource, "list", namespace is not None)
        if resource.builtin:
            call_args = [namespace] if namespace is not None else []
        else:
            call_args = [*args, *([namespace] if namespace is not None else []), resource.plural]
        return method(*call_args, _preload_content=False, **query)

    async def list(
        self, resource: Resource, namespace: str | None = None, *, label_selector: str = ""
    ) -> Page:
        """All objects (of one namespace, or of all); items get their ``kind``/``apiVersion``."""
        timeout = self.cfg.request_timeout_s
        query: dict[str, Any] = {"_request_timeout": timeout}
        if label_selector:
            query["label_selector"] = label_selector
        where = f"in {namespace}" if namespace else "in all namespaces"
        data = await asyncio.to_thread(
            self._call,
            f"listing {resource.plural} {where}",
            lambda: self._list_call(resource, namespace, **query),
            timeout,
        )
        items = [i for i in data.get("items") or [] if isinstance(i, dict)]
        for item in items:
            item.setdefault("kind", resource.kind)
            item.setdefault("apiVersion", resource.api_version)
        meta = data.get("metadata") or {}
        return Page(items=items, resource_version=str(meta.get("resourceVersion") or ""))

    def open_watch(
        self, resource: Resource, namespace: str | None, resource_version: str, timeout_s: int
    ) -> WatchStream:
        """Blocking (call it from a stream thread): start a watch after ``resource_version``
        with bookmarks; the server ends it after ``timeout_s`` seconds."""
        request_timeout = self.cfg.request_timeout_s
        what = f"watching {resource.plural} in {namespace or 'all namespaces'}"
        # read timeout: the server's own end of the stream plus one request's worth of slack
        read_timeout = timeout_s + request_timeout
        with kube_errors(what, read_timeout):
            response = self._list_call(
                resource,
                namespace,
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=resource_version or None,
                timeout_seconds=timeout_s,
                _request_timeout=(request_timeout, read_timeout),
            )
        return WatchStream(response, what, read_timeout)

    async def offload_stream(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a long blocking stream reader on the stream thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._streams, fn, *args)


def current_namespace(kubeconfig: str) -> str:
    """The namespace of the kubeconfig's current context, as kubectl picks it ("default")."""
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig or None)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, ValueError, TypeError):
        return "default"
    context = (active or {}).get("context") or {}
    return str(context.get("namespace") or "default")


_HTTP_METHODS = {"get": "GET", "list": "GET", "create": "POST", "patch": "PATCH", "replace": "PUT"}


def _camel(name: str) -> str:
    """``label_selector`` → ``labelSelector`` (query parameter names)."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _load_client(cfg: Config) -> client.ApiClient:
    conf = client.Configuration()
    try:
        if cfg.kubeconfig:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=cfg.kubeconfig, client_configuration=conf, persist_config=False
            )
        else:
            config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        source = f"kubeconfig {cfg.kubeconfig}" if cfg.kubeconfig else "in-cluster configuration"
        raise errors.InvalidInput(
            f"{cfg.setting}: cannot load the {source}: {exc}", path=cfg.setting
        ) from exc
    conf.retries = False  # the informers retry with their own capped backoff
    conf.connection_pool_maxsize = cfg.max_streams + 8
    api = client.ApiClient(conf)
    api.user_agent = f"{cfg.agent}/{_version()} (python kubernetes)"
    return api


def _version() -> str:
    try:
        return importlib.metadata.version("sluice")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"
