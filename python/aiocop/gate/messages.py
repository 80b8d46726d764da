"""What a user reads: a test's failure, and the session's summary lines.

A failure names each blocking event with its arguments, the slice's
duration, the stack from the project's own code (the innermost frame of it
first) down to the test, where it happened (the test, or one of its
fixtures), and how to take the call off the loop.
"""

from __future__ import annotations

import os

from aiocop.gate.collector import BlockedSlice, Event, Frame, is_library_frame

#: Shown at most, per phase; the rest are counted.
MAX_SLICES_SHOWN = 5
MAX_FRAMES_SHOWN = 12

_GENERIC_FIX = (
    "run it off the loop: `await asyncio.to_thread(func, *args)` or `await loop.run_in_executor(None, func, *args)`"
)
_FIXES = {
    "time.sleep": "use `await asyncio.sleep(...)`",
    "subprocess.Popen": "use `await asyncio.create_subprocess_exec(...)`",
    "os.system": "use `await asyncio.create_subprocess_shell(...)`",
}
_CPU_FIX = (
    "move the work off the loop: `await asyncio.to_thread(func, *args)`, or a process pool for CPU-bound work"
    " (`loop.run_in_executor(ProcessPoolExecutor(), func, *args)`)"
)


def failure(slices: list[BlockedSlice], phase: str, fail_on: str) -> str:
    """The failure text of one phase of a test."""
    where = _phase_name(slices[0], phase)
    lines = [f"aiocop: {len(slices)} slice(s) blocked the event loop during {where} (--aiocop-fail-on={fail_on})"]
    for blocked in slices[:MAX_SLICES_SHOWN]:
        lines.append("")
        lines.extend(describe_slice(blocked))
    if len(slices) > MAX_SLICES_SHOWN:
        lines.append(f"... and {len(slices) - MAX_SLICES_SHOWN} more slice(s)")
    return "\n".join(lines)


def _phase_name(blocked: BlockedSlice, phase: str) -> str:
    return "the test" if phase == "call" else f"its {phase}"


def describe_slice(blocked: BlockedSlice) -> list[str]:
    """One slice: what blocked, how long the loop was held, where, and the fix."""
    place = f" in fixture '{blocked.where.fixture}'" if blocked.where.fixture else ""
    if blocked.cpu:
        lines = [
            f"CPU: the loop ran one callback for {blocked.elapsed_ms:.1f} ms without yielding"
            f" (threshold {blocked.threshold_ms:g} ms){place}"
        ]
        lines.extend(f"    sampled at {entry}" for entry in blocked.cpu_entry_points[:3])
        lines.append(f"  fix: {_CPU_FIX}")
        return lines
    lines = [f"the slice{place} held the loop {blocked.elapsed_ms:.1f} ms, blocking in:"]
    for event in blocked.unallowed:
        lines.append(f"  {event.name}({event.args})  [weight {event.weight}]")
        lines.extend(f"    {line}" for line in stack_lines(event.frames))
    fixes = sorted({fix_for(e.name) for e in blocked.unallowed})
    lines.extend(f"  fix: {fix}" for fix in fixes)
    if blocked.allowed:
        lines.append(f"  (and {len(blocked.allowed)} allowed event(s))")
    return lines


def fix_for(event_name: str) -> str:
    return _FIXES.get(event_name, _GENERIC_FIX)


def stack_lines(frames: tuple[Frame, ...]) -> list[str]:
    """The stack from the project's innermost frame out to the test; the library frames it called into, in one line."""
    if not frames:
        return ["(no stack: another callback read this slice's details first)"]
    first_own = next((i for i, f in enumerate(frames) if not is_library_frame(f)), None)
    if first_own is None:
        return [_frame_line(f) for f in frames[:MAX_FRAMES_SHOWN]]
    own = [f for f in frames[first_own:] if not is_library_frame(f)]
    lines = [_frame_line(f) for f in own[:MAX_FRAMES_SHOWN]]
    if first_own > 0:
        inner = frames[first_own - 1]
        lines[0] += f"   (calling {_identity(inner)})"
    return lines


def _frame_line(frame: Frame) -> str:
    return f"{_shown_path(frame.filename)}:{frame.line} {_identity(frame)}"


def _shown_path(filename: str) -> str:
    """Relative to the current directory (pytest's rootdir, usually) when under it, as pytest shows paths."""
    if not os.path.isabs(filename):
        return filename
    relative = os.path.relpath(filename)
    return filename if relative.startswith("..") else relative


def _identity(frame: Frame) -> str:
    return f"{frame.module}:{frame.qualname}" if frame.module else frame.qualname


def event_names(events: list[Event]) -> str:
    """`time.sleep x2, open` for a summary line."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event.name] = counts.get(event.name, 0) + 1
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in counts.items())
