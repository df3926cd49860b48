"""Finding a conversation again without its id: recent sessions in resources/list, and session ids
completed as they are typed (the resume prompt's argument, the resource templates' variable)."""

from __future__ import annotations

from collections.abc import Sequence

from mcp.server.mcpserver import MCPServer
from mcp.types import (
    Annotations,
    Completion,
    CompletionArgument,
    CompletionContext,
    ListResourcesResult,
    PromptReference,
    Resource,
    ResourceTemplateReference,
)

from memory import SessionIndexOffError, SessionMemoryError, SessionStore, SessionSummary
from server.errors import as_protocol_errors, protocol_error
from server.isolation import StoreLookup
from server.prompts import RESUME_PROMPT
from server.resources import JSON_TEMPLATE, MARKDOWN_TEMPLATE, session_uri, utc_time
from server.results import iso_utc

# Sessions per resources/list page: a picker's worth, well under the store's 100.
RESOURCES_PER_PAGE = 50
# What completion/complete may return at most (the MCP limit) and the store lists at most.
MOST_COMPLETIONS = 100


def session_resource(summary: SessionSummary) -> Resource:
    """A listed session as a concrete resource: its JSON URI, named by its title (or its id)."""
    saved = utc_time(summary.updated_at)
    return Resource(
        uri=session_uri(summary.session_id),
        name=summary.title or summary.session_id,
        title=summary.title,
        description=f"Stored conversation {summary.session_id!r}, last saved {saved}.",
        mime_type="application/json",
        annotations=Annotations(last_modified=iso_utc(summary.updated_at)),
    )


async def list_resources_page(
    store: SessionStore, fixed: Sequence[Resource], cursor: str | None
) -> ListResourcesResult:
    """The server's fixed resources (on the first page), then its sessions, newest first.

    Without a session index the fixed resources alone, and no error: hosts list resources on
    their own, and a server that cannot list sessions still has its templates. A cursor the
    store refuses is invalid params (-32602).
    """
    first = list(fixed) if cursor is None else []
    try:
        page = await store.list_sessions(RESOURCES_PER_PAGE, cursor)
    except SessionIndexOffError:
        return ListResourcesResult(resources=first)
    except SessionMemoryError as exc:
        raise protocol_error(exc) from exc
    listed = [session_resource(summary) for summary in page.sessions]
    return ListResourcesResult(resources=first + listed, next_cursor=page.next_cursor)


def completes_a_session_id(ref: PromptReference | ResourceTemplateReference, argument: str) -> bool:
    """Whether the argument is a session id: the resume prompt's, or a session template's."""
    if argument != "session_id":
        return False
    if isinstance(ref, PromptReference):
        return ref.name == RESUME_PROMPT
    return ref.uri in (JSON_TEMPLATE, MARKDOWN_TEMPLATE)


async def complete_session_id(store: SessionStore, typed: str) -> Completion:
    """The ids of sessions starting with `typed`, newest first; none without a session index."""
    with as_protocol_errors():
        ids = await store.session_ids_starting_with(typed, MOST_COMPLETIONS)
    # The store gives at most as many as asked: a full list may have left some out.
    return Completion(values=ids, total=None, has_more=len(ids) == MOST_COMPLETIONS)


def register_completions(server: MCPServer, stores: StoreLookup) -> None:
    """Answer completion/complete (which declares the `completions` capability): session ids for
    a session_id argument, and an empty completion for any other argument or reference."""

    @server.completion()  # type: ignore[no-untyped-call, untyped-decorator]
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if not completes_a_session_id(ref, argument.name):
            return None
        return await complete_session_id(stores(), argument.value)
