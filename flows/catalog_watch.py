"""Definition blocks checked the moment they are saved, while `pipeline serve` runs.

Prefect's server stores whatever the UI's block form sends (Prefect 3.8.8's forms do not
check a block against its schema), and the form posts back the `revision` and `digest`
it was opened with. So the watcher follows Prefect's `prefect.block-document.*` events
for definition blocks and checks each saved document at once (flows.catalog.check_document):
an edit is recorded as the next revision with its digest, an invalid one gets every problem
listed on the block and an `opsflow.definition.invalid` event, and a document made with an
older block schema is moved to the current one (the form the UI builds for it). Every block
is checked once when the watch starts, so edits made while nothing watched are caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

from flows.catalog import BLOCK_TYPE_SLUG, PipelineDefinitionBlock, announce, check_document

__all__ = ["DefinitionBlockWatch", "watch_definition_blocks"]

RETRY_SECONDS = 5.0
PAGE = 200

log = logging.getLogger("opsflow.catalog")


async def watch_definition_blocks(stopping: asyncio.Event, *, retry_seconds: float = RETRY_SECONDS) -> None:
    """Check definition blocks as they are saved until `stopping` is set.

    A lost connection to the API (a restart, a dropped websocket) is logged and retried
    every `retry_seconds`, with a full check of every block each time it is back.
    """
    watch = DefinitionBlockWatch()
    task = asyncio.create_task(watch.run_forever(retry_seconds), name="opsflow-definition-blocks")
    try:
        await stopping.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class DefinitionBlockWatch:
    """One watcher's state: the highest revision recorded per document, so a stale form's
    older revision is never taken for the current one."""

    def __init__(self) -> None:
        self.highest: dict[UUID, int] = {}
        self.schema_id: UUID | None = None  # the current block schema, as registered
        self.connected = asyncio.Event()

    async def run_forever(self, retry_seconds: float) -> None:
        while True:
            try:
                await self.follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API is away: serving goes on, the watch comes back
                log.warning("definition blocks not watched (%s); trying again in %.0f s", exc, retry_seconds)
            self.connected.clear()
            await asyncio.sleep(retry_seconds)

    async def follow(self) -> None:
        """Subscribe, check every block once, then each one an event says was saved."""
        from prefect.client.orchestration import get_client
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

        async with get_client() as client:
            await PipelineDefinitionBlock.aregister_type_and_schema(client=client)
            self.schema_id = PipelineDefinitionBlock._block_schema_id
            block_type = await client.read_block_type_by_slug(BLOCK_TYPE_SLUG)
            saved = EventFilter(
                event=EventNameFilter(
                    name=["prefect.block-document.created", "prefect.block-document.updated"]
                ),
                related=EventRelatedFilter(
                    resources_in_roles=[(f"prefect.block-type.{block_type.id}", "block-type")]
                ),
            )
            async with get_events_subscriber(filter=saved, reconnection_attempts=3) as events:
                offset = 0  # subscribed first, so no save between the two is missed
                while True:
                    page = await client.read_block_documents_by_type(
                        BLOCK_TYPE_SLUG, offset=offset, limit=PAGE, include_secrets=False
                    )
                    for document in page:
                        await self.check(client, document)
                    if len(page) < PAGE:
                        break
                    offset += PAGE
                self.connected.set()
                async for event in events:
                    document_id = event.resource.id.removeprefix("prefect.block-document.")
                    await self.check_id(client, document_id)

    async def check_id(self, client: Any, document_id: str) -> None:
        from prefect.exceptions import ObjectNotFound

        try:
            document = await client.read_block_document(UUID(document_id), include_secrets=False)
        except (ValueError, ObjectNotFound):  # deleted since, or not a document id
            return
        await self.check(client, document)

    async def check(self, client: Any, document: Any) -> None:
        """Check one document and write back what the check found (only then: no echo loop).

        A document the API refuses to update is logged and left: the others are still checked.
        """
        import httpx
        from prefect.client.schemas.actions import BlockDocumentUpdate

        if document.is_anonymous:  # no name to run it by
            return
        checked = check_document(document, floor=self.highest.get(document.id, 0))
        schema_id = self.schema_id
        migrate = schema_id is not None and document.block_schema_id != schema_id
        if checked.update or migrate:
            # the server moves a document to another schema only along with (merged) data
            change = BlockDocumentUpdate(data=checked.update, merge_existing_data=True)
            if migrate:
                change.block_schema_id = schema_id
            try:
                await client.update_block_document(block_document_id=document.id, block_document=change)
            except httpx.HTTPStatusError as exc:
                log.warning("definition block %s not updated: %s", checked.name, exc)
                return
            announce(document, checked)
        if checked.pipeline is not None:
            self.highest[document.id] = max(self.highest.get(document.id, 0), checked.revision)
            if "revision" in checked.update:
                log.info(
                    "definition block %s: revision %d (%s)", checked.name, checked.revision, checked.digest
                )
        elif checked.update:
            log.warning(
                "definition block %s is invalid (%d problem(s)): %s",
                checked.name,
                len(checked.problems),
                "; ".join(checked.problems),
            )
