"""Temporal connection and the search attributes operators use to find a task in the Web UI."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from taskdrive.settings import Settings

# Registered on the embedded dev server by `taskdrive up` and the test fixtures; on another
# cluster register them once: `temporal operator search-attribute create --name <n> --type Keyword`.
SA_TASK_TYPE = SearchAttributeKey.for_keyword("TaskdriveType")
SA_ACCOUNT_ID = SearchAttributeKey.for_keyword("TaskdriveAccountId")
SA_STATUS = SearchAttributeKey.for_keyword("TaskdriveStatus")
SEARCH_ATTRIBUTES = (SA_TASK_TYPE, SA_ACCOUNT_ID, SA_STATUS)


def dev_server_search_attribute_args() -> list[str]:
    """`temporal server start-dev` arguments that register the search attributes."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
