"""Routes: the name a web framework gives the request a task serves, recorded with its slices.

When recording starts, the frameworks the program has imported are hooked,
and those it imports later are hooked as their module is imported (a
finder in ``sys.meta_path`` that only answers for the modules below, so a
program that is not a web app imports nothing more and pays nothing per
slice). Once a framework has routed a request, the hook calls
``_native.set_route("GET /items/{item_id}")``: the route goes into a
``ContextVar`` of the request's task, so every later slice of that task,
and of the tasks it spawns (they copy its context), is recorded with the
context value ``route``; the slice that routed the request also records a
``route.start``, which is how ``aiocop-analyze --by route`` counts requests.

Each hook wraps one public method of the framework's router, in the
class, and only adds the naming: what the method returns and raises is
unchanged. A hook that fails to name a request is logged once and never
raises into the application.
"""

import contextvars
import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from aiocop import _native

logger = logging.getLogger(__name__)

_route: contextvars.ContextVar[str | None] = contextvars.ContextVar("aiocop_route", default=None)
# The path of the Starlette `Mount`s a request went through, for the routes inside them.
_mount_prefix: contextvars.ContextVar[str] = contextvars.ContextVar("aiocop_mount_prefix", default="")

# One string per route, so that the native side caches its id by address.
_names: dict[tuple[str, str], str] = {}
_MAX_NAMES = 10_000
_failed = False


def route_name(method: str, template: str) -> str:
    """``"GET /items/{item_id}"``: the method and the template, one string per route."""
    key = (method, template)
    name = _names.get(key)
    if name is None:
        if len(_names) >= _MAX_NAMES:
            _names.clear()
        name = _names[key] = f"{method} {template}"
    return name


def set_route(method: str, template: str) -> None:
    """Name the request the current task serves (and count it). Never raises."""
    try:
        _native.set_route(route_name(method, template))
    except Exception as error:
        _hook_failed(error)


def current_route() -> str | None:
    """The route of the request the current task serves, if a framework named one."""
    return _route.get()


def _hook_failed(error: BaseException) -> None:
    global _failed
    if not _failed:
        _failed = True
        logger.warning("aiocop could not name a request's route (later failures are not logged): %s", error)


# --- Starlette and FastAPI ---------------------------------------------------


def _starlette_method(scope: Any) -> str:
    return scope.get("method", "GET") if scope.get("type") == "http" else "WEBSOCKET"


def _name_starlette_route(route: Any, scope: Any) -> None:
    try:
        # FastAPI's included routers keep the path they are reached by in the scope.
        effective = scope.get("fastapi", {}).get("effective_route_context") if isinstance(scope, dict) else None
        template = getattr(effective, "path", "") or route.path
        name = route_name(_starlette_method(scope), _mount_prefix.get() + template)
        # FastAPI's APIRoute.handle calls Route.handle: one request, named once.
        if _route.get() is not name:
            _native.set_route(name)
    except Exception as error:
        _hook_failed(error)


def _replace_method(cls: type, name: str, wrap: Callable[[Any], Callable[..., Any]]) -> None:
    """Replace ``cls.name`` (its own, not inherited) by ``wrap(original)``, once.

    Every framework hook goes through here: a class hooked twice (a module
    reloaded, or hooked both at start and on import) keeps one wrapper.
    """
    original = cls.__dict__.get(name)
    if original is None or getattr(original, "_aiocop_wrapper", False):
        return
    wrapper = wrap(original)
    wrapper._aiocop_wrapper = True  # type: ignore[attr-defined]
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(original, "__name__", wrapper.__name__)
    wrapper.__qualname__ = getattr(original, "__qualname__", wrapper.__qualname__)
    wrapper.__doc__ = getattr(original, "__doc__", None)
    setattr(cls, name, wrapper)


def _wrap_route_handle(cls: type) -> None:
    def wrap(original: Any) -> Callable[..., Any]:
        def handle(self: Any, scope: Any, receive: Any, send: Any) -> Any:
            _name_starlette_route(self, scope)
            return original(self, scope, receive, send)

        return handle

    _replace_method(cls, "handle", wrap)


def _wrap_mount_handle(cls: type) -> None:
    def wrap(original: Any) -> Callable[..., Any]:
        def handle(self: Any, scope: Any, receive: Any, send: Any) -> Any:
            try:
                _mount_prefix.set(_mount_prefix.get() + self.path)
            except Exception as error:
                _hook_failed(error)
            return original(self, scope, receive, send)

        return handle

    _replace_method(cls, "handle", wrap)


def _hook_starlette(routing: ModuleType) -> None:
    _wrap_route_handle(routing.Route)
    _wrap_route_handle(routing.WebSocketRoute)
    _wrap_mount_handle(routing.Mount)


def _hook_fastapi(routing: ModuleType) -> None:
    for name in ("APIRoute", "APIWebSocketRoute"):
        cls = getattr(routing, name, None)
        if isinstance(cls, type):
            _wrap_route_handle(cls)


# --- aiohttp ------------------------------------------------------------------


def _hook_aiohttp(urldispatcher: ModuleType) -> None:
    def wrap(original: Any) -> Callable[..., Any]:
        async def resolve(self: Any, request: Any) -> Any:
            match_info = await original(self, request)
            try:
                resource = match_info.route.resource
                template = resource.canonical if resource is not None else "<unmatched>"
                set_route(request.method, template)
            except Exception as error:
                _hook_failed(error)
            return match_info

        return resolve

    _replace_method(urldispatcher.UrlDispatcher, "resolve", wrap)


# --- Sanic --------------------------------------------------------------------


def _hook_sanic(router: ModuleType) -> None:
    def wrap(original: Any) -> Callable[..., Any]:
        def get(self: Any, path: str, method: str, host: str | None) -> Any:
            found = original(self, path, method, host)
            try:
                set_route(method, "/" + found[0].path)  # as Sanic's Request.uri_template
            except Exception as error:
                _hook_failed(error)
            return found

        return get

    _replace_method(router.Router, "get", wrap)


# --- Litestar -----------------------------------------------------------------


def _hook_litestar(asgi_router: ModuleType) -> None:
    def wrap(original_init: Any) -> Callable[..., Any]:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            # `handle_routing` is the router's cached `_handle_routing`, set here:
            # wrapped around the cache, it names every request, cached or not.
            routing = self.handle_routing

            def handle_routing(path: str, method: Any) -> Any:
                found = routing(path=path, method=method)
                try:
                    set_route(method or "WEBSOCKET", found[-1])  # what Litestar puts in scope["path_template"]
                except Exception as error:
                    _hook_failed(error)
                return found

            self.handle_routing = handle_routing

        return __init__

    _replace_method(asgi_router.ASGIRouter, "__init__", wrap)


# --- Django (ASGI) ------------------------------------------------------------
#
# Django routes in a child task: ASGIHandler.handle reads the body, sends
# `request_started`, then runs `process_request` (where `resolve_request`
# runs) in a task of its own and closes the request after it. Named only
# there, the handler's own slices (reading, signals, closing: a quarter of a
# small view's loop time) had no route. So the request is named when the
# handler starts, from the scope's path against the root URLconf, and
# `resolve_request` counts it. If a middleware's URLconf (`request.urlconf`,
# as django-hosts sets) resolves a request otherwise, the root URLconf is no
# guide for this program: that request is named and counted again, and
# requests are from then on named only when Django resolves them.


def _django_template(match: Any) -> str:
    return "/" + str(match.route or match.view_name)


_django_root_urlconf_names_requests = True


def _name_django_request_early(scope: Any) -> None:
    if not _django_root_urlconf_names_requests or not isinstance(scope, dict) or scope.get("type") != "http":
        return
    try:
        urls: Any = sys.modules["django.urls"]  # imported by the ASGI handler's module
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        try:
            match = urls.get_resolver().resolve(path)
        except urls.Resolver404:
            return  # named, if at all, when Django resolves it (a 404 is not)
        set_route(scope.get("method", "GET"), _django_template(match))
    except Exception as error:
        _hook_failed(error)


def _stop_naming_django_requests_early() -> None:
    global _django_root_urlconf_names_requests
    _django_root_urlconf_names_requests = False


def _hook_django_asgi(asgi: ModuleType) -> None:
    def wrap(original: Any) -> Callable[..., Any]:
        def handle(self: Any, scope: Any, receive: Any, send: Any) -> Any:
            _name_django_request_early(scope)
            return original(self, scope, receive, send)

        return handle

    _replace_method(asgi.ASGIHandler, "handle", wrap)


def _hook_django(base: ModuleType) -> None:
    def wrap(original: Any) -> Callable[..., Any]:
        def resolve_request(self: Any, request: Any) -> Any:
            resolved = original(self, request)
            try:
                match = request.resolver_match
                name = route_name(request.method, _django_template(match))
                named = _route.get()
                if named is not name:
                    if named is not None:
                        _stop_naming_django_requests_early()
                    _native.set_route(name)
            except Exception as error:
                _hook_failed(error)
            return resolved

        return resolve_request

    _replace_method(base.BaseHandler, "resolve_request", wrap)


#: The module of each framework whose import installs its hook.
HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "starlette.routing": _hook_starlette,
    "fastapi.routing": _hook_fastapi,
    "aiohttp.web_urldispatcher": _hook_aiohttp,
    "sanic.router": _hook_sanic,
    "litestar._asgi.asgi_router": _hook_litestar,
    "django.core.handlers.base": _hook_django,
    "django.core.handlers.asgi": _hook_django_asgi,
}


def _apply(name: str, module: ModuleType) -> None:
    try:
        HOOKS[name](module)
    except Exception as error:
        logger.warning("aiocop could not hook %s for routes: %s", name, error)


class _HookedLoader(importlib.abc.Loader):
    """The framework module's own loader, which hooks the module once it has run."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _apply(self._name, module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _FrameworkFinder(importlib.abc.MetaPathFinder):
    """Answers only for the framework modules of HOOKS, by asking the finders after it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader, fullname)
                return spec
        return None


_installed = False


def install() -> None:
    """Hook the frameworks imported already, and each one the program imports from now on. Once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    _native.set_route_var(_route)
    for name in HOOKS:
        module = sys.modules.get(name)
        if module is not None:
            _apply(name, module)
    sys.meta_path.insert(0, _FrameworkFinder())
