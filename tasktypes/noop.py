"""NoOp: a task that does nothing, through the whole lifecycle.

A diagnostic type: it measures what the task system itself costs per task (create, projection,
one step, completion), which is how ``bench/tasks.py`` uses it, and it checks that a category's
workers run tasks at all (create it with ``"category": "<name>"``). No parameters; results
are empty.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity, workflow

from workflows.lifecycle import TaskWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.steps import StepContext, run_step
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import StepRequest, StepResult, TaskInput, TaskOutcome


class NoOpParams(TaskParams):
    pass


@activity.defn(name="NoOp.nothing")
async def nothing(request: StepRequest) -> StepResult:
    return await run_step(request, _nothing)


async def _nothing(_: StepContext) -> dict[str, Any]:
    return {}


@workflow.defn(name="NoOp")
class NoOpWorkflow(TaskWorkflow[NoOpParams]):
    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)

    async def execute(self) -> dict[str, Any]:
        return await self.step(nothing, final=True)


NO_OP = register(
    TaskType(
        name="NoOp",
        category="files",
        default_priority=50,
        description="Does nothing: a diagnostic of the task system's own cost",
        params=NoOpParams,
        workflow=NoOpWorkflow,
        activities=(nothing,),
    )
)
