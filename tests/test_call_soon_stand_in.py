"""aiocop's ``call_soon`` is a method of the loop's class, not an instance attribute (see recorder/src/call_soon.rs)."""

from __future__ import annotations

import asyncio

from aiocop import _native


def test_a_call_soon_override_calling_super_reaches_the_original_once_without_recursion():
    class Overriding(asyncio.SelectorEventLoop):
        calls = 0

        def call_soon(self, callback, *args, context=None):  # type: ignore[no-untyped-def]
            Overriding.calls += 1
            return super().call_soon(callback, *args, context=context)

    stamped, plain = Overriding(), asyncio.SelectorEventLoop()
    try:
        assert _native.stamp_call_soon(stamped) is True
        assert _native.stamp_call_soon(stamped) is False, "stamped already"
        assert "call_soon" not in vars(stamped), "on the class, not the instance"
        assert type(vars(asyncio.BaseEventLoop)["call_soon"]).__name__ == "method_descriptor"
        ran: list[str] = []
        for loop, name in ((stamped, "stamped"), (plain, "plain")):
            handle = loop.call_soon(ran.append, name)
            assert isinstance(handle, asyncio.Handle)
            loop.call_soon(loop.stop)
            loop.run_forever()
        assert ran == ["stamped", "plain"]
        assert Overriding.calls == 2, "the override ran once per call: no recursion through super()"
    finally:
        _native.unstamp_call_soon(id(stamped))
        stamped.close()
        plain.close()


def test_the_stand_ins_keep_the_signatures_inspect_reads():
    """Frameworks and debuggers call inspect.signature on loop methods; a stand-in without a text
    signature made it raise ValueError while the class was patched (process-wide, once recorded)."""
    import inspect
    import selectors

    def after_self(method: object) -> list[inspect.Parameter]:
        # A built-in's self is positional-only (`$self`); what follows it is what callers see.
        return list(inspect.signature(method).parameters.values())[1:]  # type: ignore[arg-type]

    with selectors.DefaultSelector() as probe:  # epoll here: its poller's poll is what aiocop times
        poller_class = type(probe._selector)  # type: ignore[attr-defined]
    originals = {
        "call_soon": after_self(asyncio.BaseEventLoop.call_soon),
        "poll": after_self(poller_class.poll),
        "_run": after_self(asyncio.Handle._run),
    }
    loop = asyncio.SelectorEventLoop()
    selector = loop._selector  # type: ignore[attr-defined]
    try:
        assert _native.stamp_call_soon(loop) is True
        assert _native.time_selector(selector) is True
        _native.install_handle_run(asyncio.Handle)
        stand_ins = {
            "call_soon": vars(asyncio.BaseEventLoop)["call_soon"],
            # The stock selector is timed in its poller's C method (recorder/src/iterations.rs).
            "poll": vars(type(selector._selector))["poll"],
            "_run": vars(asyncio.Handle)["_run"],
        }
        assert {type(m).__name__ for m in stand_ins.values()} == {"method_descriptor"}
        assert {name: after_self(m) for name, m in stand_ins.items()} == originals
        assert str(inspect.signature(loop.call_soon)) == "(callback, *args, context=None)"
    finally:
        _native.unstamp_call_soon(id(loop))
        _native.untime_selector(id(selector))
        loop.close()
