"""FileEncrypt and FileDecrypt: files to and from age (age-encryption.org/v1, passphrase/scrypt).

Both rewrite each file in place: the file keeps its id, and its record switches to the new bytes.

- FileEncrypt stores the file age-encrypted: name + ".age", content type
  ``application/age-encrypted``, hash and size of the encrypted bytes. Any age implementation
  (``age -d``, rage) decrypts a download with the password.
- FileDecrypt reverses it: ".age" is stripped from the name (a name without it stays), the
  content type is guessed from the new name, hash and size are the plaintext's. A wrong
  password fails the task with WRONG_PASSWORD, a file that is not a passphrase age file (or is
  damaged or truncated) with DECRYPTION_FAILED; either way the file is left exactly as it was.

Per file, crash-safe: the new bytes are streamed (pool -> age -> pool, constant memory) to a
key of their own (``activities.crypt.rewritten_key``), so the old object stays intact; only
when the new object is complete (for decryption: every chunk, the final one included,
authenticated) does one transaction switch the record's key, name, type, hash and size; then
the old object is deleted, and the step checkpoints. A step repeated after a crash, or the task
retried, recognises a file it already switched by its key and does not rewrite it twice.

Each rewrite is noted in Postgres before its bytes are written (``activities.relocation``, as
a move is), until the checkpoint has it: the next run of the step, or the cleanup of a task
that ends short of Completed, removes whichever of the two objects the record does not point
at, even when the run that was cut short never answered.

The password is a SecretStr parameter: sealed for Temporal, redacted for Postgres and answers
(``taskdrive.params``); the step unseals it in memory and never logs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from temporalio import activity, workflow

from tasktypes._relocating import settle_replacements
from workflows.lifecycle import TaskWorkflow
from workflows.versions import REWRITE_CLEANUP_SETTLES

with workflow.unsafe.imports_passed_through():
    from pydantic import Field, SecretStr

    from activities.crypt import (
        AGE_CONTENT_TYPE,
        SourceMismatch,
        decrypted_name,
        encrypted_name,
        rewrite,
        rewritten_key,
    )
    from activities.files import content_type_of, load_files, switch_record
    from activities.relocation import checkpointed, note_rewrite, settle, settle_moves_step
    from activities.steps import StepContext, StepFailed, run_step
    from activities.streams import read_object
    from taskdrive.db.models import File
    from taskdrive.errors import ErrorCode
    from taskdrive.fileops.age import AgeError, WrongPassphrase, decrypt_stream, encrypt_stream
    from taskdrive.params import TaskParams
    from taskdrive.registry import TaskType, register
    from taskdrive.tasks import RetryRules, StepRequest, StepResult, TaskInput, TaskOutcome

# Encrypting sets a password, so ask for a real one; decrypting takes whatever the file was
# encrypted with. No upper bound: the model also validates the sealed form, which is longer.
MIN_NEW_PASSWORD = 8


class FileEncryptParams(TaskParams):
    file_ids: list[str] = Field(min_length=1, max_length=1000)
    password: SecretStr = Field(min_length=MIN_NEW_PASSWORD)


class FileDecryptParams(TaskParams):
    file_ids: list[str] = Field(min_length=1, max_length=1000)
    password: SecretStr = Field(min_length=1)


@dataclass(frozen=True)
class _Way:
    """What differs between the two directions."""

    verb: str
    codec: Callable[[AsyncIterator[bytes], str], AsyncIterator[bytes]]
    name: Callable[[str], str]
    content_type: Callable[[str], str]


_ENCRYPT = _Way("encrypting", encrypt_stream, encrypted_name, lambda _: AGE_CONTENT_TYPE)
_DECRYPT = _Way("decrypting", decrypt_stream, decrypted_name, content_type_of)


@activity.defn(name="FileEncrypt.encrypt_files")
async def encrypt_files(request: StepRequest) -> StepResult:
    return await run_step(request, lambda ctx: _rewrite_files(ctx, _ENCRYPT))


@activity.defn(name="FileDecrypt.decrypt_files")
async def decrypt_files(request: StepRequest) -> StepResult:
    return await run_step(request, lambda ctx: _rewrite_files(ctx, _DECRYPT))


async def _rewrite_files(ctx: StepContext, way: _Way) -> dict[str, Any]:
    file_ids: list[str] = ctx.params["fileIds"]  # validated by the workflow and at create
    await settle(ctx)  # a rewrite cut short: keep only the object its record points at
    files = await load_files(ctx.runtime, ctx.request.account_id, file_ids)
    password = ctx.secret("password")
    done: dict[str, dict[str, Any]] = dict(ctx.checkpoint.get("done", {}))
    for number, file in enumerate(files):
        if str(file.id) in done:
            continue  # done before a pause, a retry or a crash
        done[str(file.id)] = await _rewrite_file(ctx, file, password, way)
        await ctx.save(progress=100.0 * (number + 1) / len(files), done=done, replacing=None)
        await checkpointed(ctx)
    return {"files": done}


async def _rewrite_file(ctx: StepContext, file: File, password: str, way: _Way) -> dict[str, Any]:
    pool = ctx.runtime.pools.get(file.pool_id)
    key = rewritten_key(file.id, ctx.task_id)
    if file.storage_key == key:
        # Switched by this task already (a crash before the checkpoint, or the task retried);
        # ``settle`` removed the old object. A heartbeat from before rewrites were noted names
        # the old object instead: remove it.
        replacing = ctx.checkpoint.get("replacing") or {}
        if replacing.get("fileId") == str(file.id):
            await pool.delete(replacing["key"])
        return _summary(file.name, file.size, file.hash)
    ctx.log.info("%s %s (%s, %d bytes)", way.verb, file.name, file.id, file.size)
    await note_rewrite(ctx, file, key)
    source = read_object(ctx, pool, file.storage_key)
    try:
        new = await rewrite(
            source, lambda plain: way.codec(plain, password), pool, key, expected_hash=file.hash
        )
    except WrongPassphrase:
        raise StepFailed(
            ErrorCode.WRONG_PASSWORD,
            f"wrong password for {file.name} ({file.id}); the file is unchanged",
            permanent=True,
        ) from None
    except AgeError as exc:
        raise StepFailed(
            ErrorCode.DECRYPTION_FAILED,
            f"{file.name} ({file.id}) cannot be decrypted, the file is unchanged: {exc}",
            permanent=True,
        ) from None
    except SourceMismatch as exc:
        raise StepFailed(
            ErrorCode.HASH_MISMATCH, f"{file.name} ({file.id}): {exc}", permanent=True
        ) from None
    name = way.name(file.name)
    if not await switch_record(
        ctx.runtime,
        file,
        storage_key=key,
        name=name,
        content_type=way.content_type(name),
        hash=new.hash,
        size=new.size,
    ):
        await pool.delete(key)
        # Another task rewrote or deleted it meanwhile; a retry starts from its new record.
        raise StepFailed(
            ErrorCode.FILE_CHANGED, f"{file.name} ({file.id}) changed while {way.verb} it"
        )
    await pool.delete(file.storage_key)
    return _summary(name, new.size, new.hash)


def _summary(name: str, size: int, digest: str) -> dict[str, Any]:
    return {"name": name, "size": size, "hash": digest}


class _RewriteWorkflow(TaskWorkflow[Any]):
    step_name: ClassVar[str]

    async def execute(self) -> dict[str, Any]:
        return await self.step(self.step_name, final=True)

    async def cleanup(self) -> None:
        # A rewrite cut short: no stray object.
        await settle_replacements(self, REWRITE_CLEANUP_SETTLES)


@workflow.defn(name="FileEncrypt")
class FileEncryptWorkflow(_RewriteWorkflow):
    step_name = "FileEncrypt.encrypt_files"

    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)


@workflow.defn(name="FileDecrypt")
class FileDecryptWorkflow(_RewriteWorkflow):
    step_name = "FileDecrypt.decrypt_files"

    @workflow.run
    async def run(self, inp: TaskInput) -> TaskOutcome:
        return await super().run(inp)


def _register(
    name: str, description: str, params: type[TaskParams], flow: type, step: Callable[..., Any]
) -> TaskType:
    return register(
        TaskType(
            name=name,
            category="files",
            default_priority=50,
            description=description,
            params=params,
            workflow=flow,
            activities=(step, settle_moves_step),
            retry=RetryRules(max_retries=3, initial_seconds=1.0),
        )
    )


FILE_ENCRYPT = _register(
    "FileEncrypt",
    "Encrypts each file in place with a password (age format; the name gains .age)",
    FileEncryptParams,
    FileEncryptWorkflow,
    encrypt_files,
)
FILE_DECRYPT = _register(
    "FileDecrypt",
    "Decrypts each age-encrypted file in place with its password (.age leaves the name)",
    FileDecryptParams,
    FileDecryptWorkflow,
    decrypt_files,
)
