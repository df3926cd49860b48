"""The console script, `session-memory-mcp`: the subcommands that save without serving (`hook`,
`save`) start without importing the MCP server, which a hook pays for on every prompt and reply
(about half a second); everything else is `server.cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["hook"] or arguments[:1] == ["save"]:
        from server.capture_commands import hook_main, save_main
        from server.settings import load_settings

        command = hook_main if arguments[0] == "hook" else save_main
        command(arguments[1:], load_settings)
        return
    from server.cli import main as serve

    serve(arguments)
