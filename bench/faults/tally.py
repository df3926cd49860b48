"""What the clients sent, and the count of what the store kept of it: lost, doubled, reordered.

Every message is either unique (its content names its client and sequence number, so each
stored turn is attributed to one message) or equal (a word from a tiny set, which many
messages share). Equal ones are counted per session, role and content: the store must hold at
least as many as were acknowledged (else some were lost) and at most as many as were attempted
(else some were stored twice). Each acknowledged equal message also claims the timestamp its
result gave: a stored turn with that role, content and timestamp answers one claim only, so two
acknowledgements of one stored turn are a loss even where a doubled turn elsewhere keeps the
session's count right. Order is checked on unique messages: a client sends into a
session one call at a time, so its acknowledged messages must be stored in the order it sent
them. A session deleted during the run holds unique messages only; a message sent before the
last delete was acknowledged and found afterwards is "resurrected" (informational). A delete that
timed out may also run late, after its retry and after newer saves: it erases every message of
the session up to that moment. So in a deleted session, acknowledged messages missing as one
block at the start (all sent before every one found) are "erased by a late delete"
(informational); a message missing after a found one is lost.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    client: int
    session: str
    seq: int  # the client's send order, over all its sessions
    role: str
    content: str
    equal: bool  # content from the tiny shared set
    epoch: int = 0  # acknowledged deletes of the session before it was sent


@dataclass
class Call:
    messages: list[Message]
    acked: bool
    attempts: int = 1
    # The timestamps the successful result gave, one per message, when acknowledged.
    timestamps: list[int] | None = None


@dataclass
class Tally:
    acknowledged: int = 0
    lost: int = 0
    doubled: int = 0
    reordered: int = 0
    unacked_calls: int = 0
    unacked_messages: int = 0  # unique-content messages of unacknowledged calls
    unacked_stored: int = 0  # of those, found in the store (at least once)
    resurrected: int = 0
    erased_by_late_delete: int = 0
    unexpected: int = 0  # stored turns that no client sent
    turns_with_id: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> the first few

    @property
    def failures(self) -> int:
        return self.lost + self.doubled + self.reordered

    def note(self, kind: str, example: str) -> None:
        kept = self.examples.setdefault(kind, [])
        if len(kept) < 5:
            kept.append(example)


def count(
    calls: Iterable[Call], stored: Mapping[str, Sequence[Mapping[str, Any]]], deletes: Mapping[str, int]
) -> Tally:
    """Compare what `calls` sent with the `stored` turns of each session (after `deletes`)."""
    tally = Tally()
    by_session: dict[str, list[tuple[Message, bool, int | None]]] = collections.defaultdict(list)
    for call in calls:
        if not call.acked:
            tally.unacked_calls += 1
        stamps: list[int | None] = list(call.timestamps or [])
        stamps += [None] * (len(call.messages) - len(stamps))
        for message, stamp in zip(call.messages, stamps, strict=False):
            by_session[message.session].append((message, call.acked, stamp))
    for session in sorted(by_session.keys() | stored.keys()):
        turns = stored.get(session, [])
        tally.turns_with_id += sum(1 for turn in turns if "id" in turn)
        _count_session(tally, session, by_session.get(session, []), turns, deletes.get(session, 0))
    return tally


def _count_session(
    tally: Tally,
    session: str,
    sent: list[tuple[Message, bool, int | None]],
    turns: Sequence[Mapping[str, Any]],
    final_epoch: int,
) -> None:
    positions: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
    exact: collections.Counter[tuple[str, str, object]] = collections.Counter()
    for index, turn in enumerate(turns):
        positions[(str(turn.get("role")), str(turn.get("content")))].append(index)
        exact[(str(turn.get("role")), str(turn.get("content")), turn.get("timestamp"))] += 1
    # (role, content) -> acknowledged timestamp -> the clients whose results gave it
    claims: dict[tuple[str, str], dict[int, list[int]]] = collections.defaultdict(dict)
    known: set[tuple[str, str]] = set()
    equal_acked: collections.Counter[tuple[str, str]] = collections.Counter()
    equal_sent: collections.Counter[tuple[str, str]] = collections.Counter()
    # Per client, the first stored position of each acknowledged unique message, in send order.
    order: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    missing: list[Message] = []
    present_seqs: list[int] = []

    for message, acked, stamp in sent:
        key = (message.role, message.content)
        known.add(key)
        found = positions.get(key, [])
        if message.equal:
            if message.epoch == final_epoch:
                equal_sent[key] += 1
                equal_acked[key] += acked
                if acked and stamp is not None:
                    claims[key].setdefault(stamp, []).append(message.client)
            continue
        if message.epoch < final_epoch:
            if found:
                tally.resurrected += 1
                tally.note("resurrected", f"resurrected in {session}: {message.content!r}")
            continue
        if len(found) > 1:
            tally.doubled += len(found) - 1
            tally.note("doubled", f"doubled in {session}: {message.content!r} stored {len(found)} times")
        if acked:
            tally.acknowledged += 1
            if found:
                order[message.client].append((message.seq, found[0]))
                present_seqs.append(message.seq)
            else:
                missing.append(message)
        else:
            tally.unacked_messages += 1
            tally.unacked_stored += bool(found)

    # Only the session's owner writes into a deleted session, so its seq order is the send order.
    first_present = min(present_seqs, default=None)
    for message in missing:
        if final_epoch and (first_present is None or message.seq < first_present):
            tally.erased_by_late_delete += 1
        else:
            tally.lost += 1
            tally.note("lost", f"lost in {session}: {message.content!r}")

    for key, attempted in equal_sent.items():
        acked_count, held = equal_acked[key], len(positions.get(key, []))
        tally.acknowledged += acked_count
        unanswered = {
            stamp: clients for stamp, clients in claims[key].items() if len(clients) > exact[(*key, stamp)]
        }
        lost = max(acked_count - held, sum(len(c) - exact[(*key, t)] for t, c in unanswered.items()))
        if lost:
            tally.lost += lost
            stamps = "; ".join(
                f"{stamp} (stored {exact[(*key, stamp)]}, acknowledged to clients {', '.join(map(str, c))})"
                for stamp, c in sorted(unanswered.items())[:3]
            )
            tally.note(
                "lost",
                f"lost in {session}: {key} acknowledged {acked_count} times, stored {held}; "
                f"timestamps acknowledged more often than stored: {stamps or 'none'}",
            )
        if held > attempted:
            tally.doubled += held - attempted
            tally.note("doubled", f"doubled in {session}: {key} sent {attempted} times, stored {held}")

    for client, sequence in order.items():
        highest = -1
        for seq, position in sorted(sequence):
            if position < highest:
                tally.reordered += 1
                tally.note(
                    "reordered",
                    f"reordered in {session}: client {client}'s message {seq} before an earlier one",
                )
            highest = max(highest, position)

    tally.unexpected += sum(len(at) for key, at in positions.items() if key not in known)
