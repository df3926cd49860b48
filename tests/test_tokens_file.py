"""MCP_TOKENS_FILE: its format, errors by line number only, the end line that marks a complete file,
and reloads that never lock clients out."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from server.tokens_file import TokensFile, TokensFileError, check_complete, parse_tokens, token_digest

A = "a-token-0123456789abcdef"
B = "b-token-0123456789abcdef"


def test_comments_blank_lines_and_spaces_around_fields_are_ignored() -> None:
    clients = parse_tokens(f"# team\n\n  alice : {A}  \nbob:{B}\n")
    assert clients == {token_digest(A): "alice", token_digest(B): "bob"}


def test_a_token_may_contain_colons() -> None:
    assert parse_tokens("svc:abc:def:0123456789abcdef") == {token_digest("abc:def:0123456789abcdef"): "svc"}


def test_one_client_may_hold_two_tokens_while_rotating() -> None:
    assert sorted(parse_tokens(f"alice:{A}\nalice:{B}\n").values()) == ["alice", "alice"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"alice:{A}\n{B}\n", "line 2: expected name:token"),
        (f"al ice:{A}\n", "line 1: a client name is 1 to 64"),
        (f"{'x' * 65}:{A}\n", "line 1: a client name is 1 to 64"),
        (f":{A}\n", "line 1: a client name is 1 to 64"),
        ("\n\nalice:too-short\n", "line 3: a token is 16 or more characters"),
        ("alice:has a space 0123456789\n", "line 1: a token is 16 or more characters"),
        (f"alice:{A}\nbob:{A}\n", "line 2: this token is already given to another line"),
        (f"mcp-auth-token:{A}\n", "line 1: the name 'mcp-auth-token' is reserved"),
    ],
)
def test_a_malformed_line_is_named_by_number_never_by_content(text: str, message: str) -> None:
    with pytest.raises(TokensFileError) as caught:
        parse_tokens(text, reserved_names=frozenset({"mcp-auth-token"}))
    assert str(caught.value).startswith(message)
    for secret in (A, B, "too-short", "has a space"):
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        f"alice:{A}\nbob:{B}\n",  # cut after a line
        f"alice:{A}\nbob:{B[:5]}",  # cut inside a line
        f"alice:{A}\n# en",  # cut inside the end line
        f"alice:{A}\n# end\nbob:{B}\n",  # a line after the end line
        "",
        "\n\n",
        f"alice:{A}\n#end\n",
    ],
)
def test_a_file_is_complete_only_when_its_last_non_empty_line_is_the_end_line(text: str) -> None:
    with pytest.raises(TokensFileError) as caught:
        check_complete(text)
    assert str(caught.value).startswith("incomplete: its last non-empty line must be '# end'")
    assert A not in str(caught.value)
    assert B[:5] not in str(caught.value)


@pytest.mark.parametrize("text", ["# end", f"alice:{A}\n# end", f"# team\nalice:{A}\n  # end  \r\n\n\n"])
def test_the_end_line_may_be_followed_by_blank_lines_and_surrounded_by_spaces(text: str) -> None:
    check_complete(text)


def test_a_file_without_its_end_line_is_a_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{A}\nbob:{B}\n")
    with pytest.raises(TokensFileError, match=r"^incomplete: its last non-empty line must be '# end'"):
        TokensFile(path)


def test_reloads_take_complete_files_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{A}\nbob:{B}\n# end\n")
    path.chmod(0o600)
    tokens = TokensFile(path)
    with caplog.at_level(logging.WARNING, logger="server.tokens_file"):
        # Rewritten in place, caught half-way: the previous clients stay.
        path.write_text(f"alice:{A}\n")
        tokens.reload_if_changed()
        tokens.reload_if_changed()
        assert tokens.client_for(B) == "bob"
        assert tokens.client_for(A) == "alice"
        # Complete without bob: bob is revoked.
        path.write_text(f"alice:{A}\n# end\n")
        tokens.reload_if_changed()
        assert tokens.client_for(B) is None
        assert tokens.client_for(A) == "alice"
        # Emptied (the first step of a rewrite): the previous clients stay.
        path.write_text("")
        tokens.reload_if_changed()
        assert tokens.client_for(A) == "alice"
        # Replaced by an atomic rename of a complete file: taken.
        staged = tmp_path / "tokens.new"
        staged.write_text(f"bob:{B}\n# end\n")
        os.replace(staged, path)
        tokens.reload_if_changed()
        assert tokens.client_for(A) is None
        assert tokens.client_for(B) == "bob"
    warnings = [record.getMessage() for record in caplog.records]
    # One warning per incomplete version of the file.
    assert len(warnings) == 2, warnings
    assert all("incomplete: its last non-empty line must be '# end'" in warning for warning in warnings)
    assert "the previous 2 token(s) stay in force" in warnings[0]
    assert "the previous 1 token(s) stay in force" in warnings[1]


def test_sighup_on_a_half_written_file_keeps_the_clients(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{A}\nbob:{B}\n# end\n")
    tokens = TokensFile(path)
    path.write_text(f"alice:{A}\n")  # caught before bob's line and the end line
    tokens.reload()
    assert tokens.client_for(B) == "bob"


def test_an_unreadable_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match=r"cannot read MCP_TOKENS_FILE \(No such file or directory\)"):
        TokensFile(tmp_path / "missing")


def test_a_changed_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{A}\n# end\n")
    tokens = TokensFile(path)
    path.write_text(f"bob:{B}\n# end\n")
    tokens.reload_if_changed()
    assert tokens.client_for(A) is None
    assert tokens.client_for(B) == "bob"


def test_a_broken_or_missing_file_keeps_the_clients_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{A}\n# end\n")
    path.chmod(0o600)
    tokens = TokensFile(path)
    with caplog.at_level(logging.WARNING, logger="server.tokens_file"):
        path.write_text(f"alice:{A}\nbob:short\n# end\n")
        for _ in range(3):
            tokens.reload_if_changed()
        path.unlink()
        for _ in range(3):
            tokens.reload_if_changed()
    assert tokens.client_for(A) == "alice"
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2, warnings
    assert "line 2: a token is 16 or more characters" in warnings[0]
    assert "No such file or directory" in warnings[1]
    assert all("bob:short" not in warning for warning in warnings)


def test_an_empty_file_refuses_everyone_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text("# nobody yet\n# end\n")
    with caplog.at_level(logging.WARNING, logger="server.tokens_file"):
        tokens = TokensFile(path)
    assert tokens.client_count == 0
    assert "names no client: every token is refused" in caplog.text


def test_a_tokens_file_others_can_read_gets_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"alice:{A}\n# end\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="server.tokens_file"):
        TokensFile(path)
    assert "can be read by other users: chmod 600" in caplog.text
