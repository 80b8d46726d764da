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
