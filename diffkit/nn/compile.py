"""``torch.compile`` for a network, falling back to eager execution if compiling fails.

Only the network's forward is compiled, never the training loop or a sampler: the loop's
Python (seeding, logging, checkpoints) stays as it is, and the eager module keeps its own
name for everything but the call, so state dicts have no ``_orig_mod.`` prefix and a run
trained compiled resumes and samples eagerly (and the other way round).

Compilation is lazy: it happens on the first call for each new input shape, and
AOTAutograd compiles the backward graph on the first backward. A compiler that is missing
or fails (no C++ compiler, an unsupported operator) must not end a long run, so a failed
call is run again eagerly; if that succeeds, the network stays eager from then on and
``on_fallback`` hears one line about it. An error that eager execution raises too is the
network's own and propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from diffkit.errors import describe_exception

DEFAULT_BACKEND = "inductor"
T = TypeVar("T")


class CompiledNet:
    """``net`` called through ``torch.compile(net, backend=backend)`` until compiling fails.

    Attribute access reaches the eager module (``.training``, ``.parameters()``, ...);
    only calls go through the compiled one. ``active`` turns False when it falls back.
    """

    def __init__(
        self,
        net: nn.Module,
        backend: str | Callable[..., Any] = DEFAULT_BACKEND,
        on_fallback: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.module = net
        self.backend = backend
        self._backend_name = getattr(backend, "__name__", str(backend))
        self._on_fallback = on_fallback
        self.active = True
        try:
            self._compiled = torch.compile(net, backend=backend)
        except Exception as exc:  # e.g. an unknown backend name
            self.retry_eagerly(exc, lambda: None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return self.module(*args, **kwargs)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as exc:
            return self.retry_eagerly(exc, lambda: self.module(*args, **kwargs))

    def retry_eagerly(self, exc: Exception, fn: Callable[[], T]) -> T:
        """``fn()`` again with the network eager, after ``exc`` from an attempt that used
        the compiled one (a call, or a backward pass whose graph is compiled lazily). If
        it succeeds the network stays eager and ``on_fallback`` is told why; if it fails
        too, its own error propagates (the network's, not the compiler's)."""
        self.active = False
        try:
            out = fn()
        except BaseException:
            self.active = True  # not the compiler's fault: keep compiling
            raise
        self._on_fallback(
            f"torch.compile ({self._backend_name}) failed, {describe_exception(exc)}; the "
            "network runs eagerly from here on (same results, eager speed)"
        )
        return out

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the wrapper itself lacks. Read through __dict__: during
        # unpickling or copying `module` may not be set yet.
        module = self.__dict__.get("module")
        if module is None:
            raise AttributeError(name)
        return getattr(module, name)


def compiled(
    net: nn.Module,
    backend: str | None,
    on_fallback: Callable[[str], None] = lambda message: None,
) -> Any:
    """``net`` itself when ``backend`` is None, else a :class:`CompiledNet` of it."""
    if backend is None:
        return net
    return CompiledNet(net, backend, on_fallback)
