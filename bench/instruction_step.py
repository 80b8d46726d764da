"""One workload for bench/instructions.py: python instruction_step.py MODE WORKLOAD STEPS.

MODE: none (no monitor), monitor (aiocop's default setup; works with aiocop 1.2.1 too), record (monitor,
and recording to a temporary trace, started inside the running loop after it was patched: loop iterations
and call_soon are not timed), record-early (recording started before the loop is made, as with
`python -m aiocop record`: the loop is patched while recording, so each poll of its selector and each
call_soon are timed too; record-iterations is another name for it). WORKLOAD: one of bench/workloads.py's
(pure, open+read, tasks, callbacks, ...). 3,000 warm-up steps, then STEPS measured ones.
"""

import asyncio
import os
import sys
import tempfile

# Run with -I, which leaves this folder off the path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import REQUEST_BODY, WORKLOADS  # noqa: E402

mode, workload, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
WARMUP_STEPS = 3000
tmp = tempfile.mkdtemp()
path = os.path.join(tmp, "catalog.json")
with open(path, "w") as f:
    f.write(REQUEST_BODY * 8)  # ~1 KiB, as for bench/workloads.py

if mode != "none":
    import aiocop

    aiocop.patch_audit_functions()
    aiocop.start_blocking_io_detection(trace_depth=20)
    aiocop.detect_slow_tasks(threshold_ms=30, on_slow_task=lambda event: None)
if mode in ("record-early", "record-iterations"):
    # Before the loop exists, as `python -m aiocop record` does: the loop is patched while recording.
    aiocop.start_recording(os.path.join(tmp, "trace.bin"), flush_interval_s=60)


async def main() -> None:
    run = WORKLOADS[workload]
    if mode != "none":
        aiocop.activate()
    if mode == "record":
        # Started before the warm-up, so that the measured steps see the recorder's steady state.
        aiocop.start_recording(os.path.join(tmp, "trace.bin"), flush_interval_s=60)
    await run(WARMUP_STEPS, path)
    await run(steps, path)
    if mode.startswith("record"):
        summary = aiocop.stop_recording()
        assert summary["slices"] >= steps and summary["dropped"] == 0, summary


asyncio.run(main())
