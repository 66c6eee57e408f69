"""The yardstick of ``bench.tasks``: a bare Temporal workflow running one activity that does
nothing. Its own module, so the workflow sandbox (on the SDK's default runner) imports only
this small module for each run."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench.nothing")
async def nothing() -> None:
    return None


@workflow.defn(name="BenchNoOp")
class RawNoOp:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(nothing, start_to_close_timeout=timedelta(seconds=60))
