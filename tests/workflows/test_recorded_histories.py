"""Histories recorded by earlier versions of the task workflows still replay.

A task in flight when the worker is upgraded continues on the new code from its history, so
every change to what a workflow commands must keep old histories replaying (``workflows.
versions``). ``histories/`` holds histories recorded before such changes: a NoOp task, a
FileChecksum paused and resumed, one retried after a transient failure, an upload paused and
resumed, and an upload cancelled, from when every projection write was a local activity;
``carried-*`` the same from when writes rode with steps (``workflows.projector``), with a
FileDecrypt failed on a wrong password and a FileMove failed on an unknown pool, from before
their cleanup settled replacements; ``rewrite-cleanup-*`` and ``move-cleanup-*`` the two with
that cleanup (``tasktypes._relocating``), all told apart by patch markers; ``v1-*`` a NoOp
task, a FileMove failed on an unknown pool, an upload paused and resumed, one cancelled, and
a FileChecksum retried, from when the version came with the input and histories had no
markers, but the status attribute started Pending and was upserted on every write. Record
one with ``WorkflowHandle.fetch_history()`` and ``WorkflowHistory.to_json()`` before changing
what a workflow commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import all_workflows

HISTORIES = {
    path.stem: json.loads(path.read_text())
    for path in sorted((Path(__file__).parent / "histories").glob("*.json"))
}


@pytest.mark.parametrize("name", sorted(HISTORIES))
async def test_a_recorded_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(f"recorded-{name}", HISTORIES[name])
    replayer = Replayer(workflows=all_workflows())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_there_are_recorded_histories() -> None:
    assert len(HISTORIES) >= 18
