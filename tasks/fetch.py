"""How our Redis channel takes a message from Redis with no moment where it is nowhere but in the
consumer's process (tasks/broker.py builds the transport on it; the scripts are in
tasks/fetch_scripts.py, what a consumer records and gives back in tasks/fetch_qos.py).

kombu's Redis consumer pops a message (BRPOP) and only then records it in the `unacked` hash, a
round trip later: a consumer killed between the two loses it, and for `automations.events.send`
the message is the event's only copy. Here:

- **A message waiting** is taken by one script that pops the first one it finds, in kombu's
  order, and records it in `unacked` as kombu does, at once: one round trip where kombu took two.
  An entry that is not a message is popped and dropped with one line.
- **Every queue empty**, the consumer waits with BLMOVE on its first queue, which moves a message
  that arrives to an in-flight list of the consumer's own, `_kombu.inflight.<token>.<queue key>`;
  the message leaves that list only in the script that records it in `unacked`. A message
  arriving on another queue of an idle consumer waits up to `brpop_timeout` (1 s).
- **Lists of dead consumers.** Each consumer refreshes its lists' score in the registry every
  `unacked_restore_interval`, and gives back, when it starts and every interval after, the lists
  of consumers silent for three intervals: their messages go back to the consuming end of their
  queue. One only late finds, when it records the message, that it is no longer in its list,
  and drops its copy: the message is delivered once, by whoever takes it from the queue.
- **Dead consumers' unacknowledged messages.** Each message recorded in `unacked` is recorded as
  its consumer's too, and every connection of the consumer names itself in Redis by the
  consumer's token (`CLIENT SETNAME`). At the same check, a consumer silent for three intervals
  with no connection left under its name (its process is gone: the kernel closed its sockets)
  is dead, and the messages it held unacknowledged go back to the consuming end of their
  queues, as kombu's visibility timeout would have put them back an hour later. One silent but
  still connected (a solo worker in a long task, a frozen process) keeps them.

This needs Redis 6.2 (BLMOVE); on an older one, or with a `global_keyprefix`, the channel
consumes as kombu does and says so in a warning. `basic_get` (a synchronous get, which the worker
does not use) pops as kombu does.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from contextlib import suppress
from dataclasses import dataclass
from queue import Empty
from time import monotonic, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import loads
from redis.exceptions import NoScriptError

from tasks.fetch_qos import FetchingQoS
from tasks.fetch_scripts import (
    FETCH,
    OWNER_OF,
    OWNERS,
    PREFIX,
    REGISTRY,
    Scripts,
    TakenBack,
    client_name,
    list_key,
    named_owners,
    owned_key,
)

log = logging.getLogger(__name__)

# What reading an entry that is not a message raises (JSON, base64 and UTF-8 errors are
# ValueErrors); never a lost connection, which kombu handles (some of its errors are KeyErrors).
UNFIT = (ValueError, KeyError, TypeError, AttributeError)
# A key that never exists: LMOVE on it answers nil where Redis has the command.
PROBE = PREFIX + "probe"
# What a consumer logs when it gave back what others held (the fault lab counts these).
GAVE_BACK_IN_FLIGHT = "%d messages in flight to consumers silent for %g s went back to their queues"
GAVE_BACK_UNACKED = "%d unacknowledged messages of dead consumers went back to their queues"


class Pushes:
    """Where kombu's restore of a message (`Channel._do_restore_message`, which marks it
    redelivered and routes it) would push it, collected instead of sent."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, str]] = []

    def rpush(self, queue: str, payload: str) -> None:
        self.pushed.append((queue, payload))

    lpush = rpush  # the end is given to the script that pushes


@dataclass
class Fetched:
    """A message the channel read, on its way to the consumer."""

    entry: bytes  # as it was in its queue
    tag: str | None  # its delivery tag; recorded under it by the fetch if `into` is None
    into: str | None  # the in-flight list holding it until it is recorded, if any


class FetchingChannel(kombu_redis.Channel):
    QoS = FetchingQoS
    # Seconds without a word from a consumer after which its in-flight lists are given back;
    # None: three `unacked_restore_interval`s (the consumer's heartbeat is sent every one).
    inflight_owner_timeout: float | None = None
    from_transport_options = (  # type: ignore[assignment]  # kombu's, and one more
        *kombu_redis.Channel.from_transport_options,
        "inflight_owner_timeout",
    )

    _reliable: bool | None = None  # None until the first fetch finds out what Redis can do
    _fetched: Fetched | None = None  # the message being delivered, until our QoS records it
    # The fetch outstanding: its command, and the queue a BLMOVE waits on and the list it
    # moves into.
    _fetch: tuple[str, str, str] | None = None
    _blocking = False  # every queue was found empty: the next fetch waits on the first one
    _dirty = False  # a fetch's reply was lost: our lists may hold what nobody will record
    _kept_at = float("-inf")
    _sees_clients = True  # CLIENT LIST is allowed: dead consumers can be told from silent ones

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._token = uuid.uuid4().hex
        self._pid = os.getpid()
        self._lists: set[str] = set()  # our in-flight lists, named in the registry
        self._scripts: Scripts | None = None
        self._scan_keys: dict[tuple[str, ...], list[str]] = {}  # by the queues' order
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    # -- fetching ----------------------------------------------------------------------------

    def _brpop_start(self, timeout: Any = None) -> None:
        if not self._fetches_reliably():
            super()._brpop_start(timeout)  # type: ignore[no-untyped-call]
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        if self._dirty:
            self._give_back_ours()
        scripts = self._scripts
        assert scripts is not None
        waits_on = self._q_for_pri(self.active_queues[0], 0)  # type: ignore[no-untyped-call]
        waits_into = list_key(self._token, waits_on)
        self._lists.add(waits_into)
        if self._blocking:
            wait = timeout or self.brpop_timeout or 1
            command: list[Any] = ["BLMOVE", waits_on, waits_into, "RIGHT", "LEFT", wait]
        else:
            keys = self._scan_keys.get(tuple(queues)) or self._scan(queues)
            args = [time(), waits_into, self._token]
            command = ["EVALSHA", scripts.fetch.sha, len(keys), *keys, *args]
        self._fetch = (command[0], waits_on, waits_into)
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        connection.send_command(*command)

    def _scan(self, queues: list[str]) -> list[str]:
        """The fetch script's keys for queues in this order: the registry, the unacked index
        and hash, the owners and our set, then the queues' lists as kombu's BRPOP names them
        (each queue's priority lists, by priority)."""
        q_for_pri: Any = self._q_for_pri  # kombu's, untyped
        keys = [REGISTRY, self.unacked_index_key, self.unacked_key, *self._owning_keys()]
        for pri in self.priority_steps:
            keys += [q_for_pri(queue, pri) for queue in queues]
        self._scan_keys[tuple(queues)] = keys
        return keys

    def _brpop_read(self, **options: Any) -> Any:
        if not self._reliable:
            return self._kombu_read(**options)
        sent, self._fetch = self._fetch, None
        if sent is None:  # a reply to nothing we asked: the connection is out of step
            self.client.connection.disconnect()
            raise Empty()
        command, waits_on, waits_into = sent
        try:
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self._dirty = True  # a BLMOVE may have moved one, its reply never read
                self._blocking = False  # a wait comes after a scan, which scores its list
                self.client.connection.disconnect()
                raise
            except NoScriptError:  # Redis forgot it (SCRIPT FLUSH): loaded again, next time
                self._load_scripts()
                raise Empty() from None
            if reply is None:
                self._blocking = command == "EVALSHA"
                raise Empty()
            self._blocking = False
            if command == "EVALSHA":
                source, entry, tag = reply[0].decode(), reply[1], reply[2]
                if tag is None:  # cjson could not read it as a message: popped, and dropped
                    log.error("dropped an entry of a queue that is not a message: %.100r", entry)
                    return True
                fetched = Fetched(entry, tag.decode(), None)
            else:
                source, fetched = waits_on, Fetched(reply, None, waits_into)
            queue = source.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            self._deliver_fetched(queue, fetched)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()  # type: ignore[no-untyped-call]

    def _deliver_fetched(self, queue: str, fetched: Fetched) -> None:
        """Hand the message to its consumer; our QoS records it on the way (`QoS.append`), if
        the fetch has not."""
        qos = self.qos
        qos.appended = False
        self._fetched = fetched
        try:
            payload = loads(fetched.entry.decode(errors="replace"))  # type: ignore[no-untyped-call]
            if fetched.tag is None:  # the tag our QoS will be asked to record it under
                fetched.tag = payload["properties"]["delivery_tag"]
            self.connection._deliver(payload, queue)
        except TakenBack:
            # Its owner looked dead (silent for the owner timeout): whoever takes it next from
            # its queue delivers it, once.
            log.warning("a message this consumer was late to take went back to its queue")
            return
        except UNFIT as unfit:
            if qos.appended:  # a message, that failed in the consumer: not ours to hide
                raise
            self._drop(fetched)
            log.error("dropped an entry of a queue that is not a message: %r", unfit)
            return
        except BaseException:
            self._dirty = True  # whatever is left in our lists goes back with the next fetch
            raise
        finally:
            unrecorded, self._fetched = self._fetched, None
        if unrecorded is not None and unrecorded.into is not None:
            # Recorded by another channel's QoS (kombu requeues a message for a queue nobody
            # consumes any longer through the connection's first channel): not ours to keep.
            self._forget(unrecorded.into, unrecorded.entry)

    def _claim(self, into: str, entry: bytes, message: Any) -> None:
        """Record a message the blocking wait took as unacknowledged, as kombu does, and take
        it off our in-flight list, at once; TakenBack if it went back to its queue meanwhile."""
        delivery = message.delivery_info
        route = json.dumps([delivery["exchange"], delivery["routing_key"]]).encode()
        record = b"[" + entry + b"," + route[1:]  # kombu's [message, exchange, routing key]
        keys = [into, self.unacked_index_key, self.unacked_key, *self._owning_keys()]
        assert self._scripts is not None
        with self.conn_or_acquire() as client:
            args = [message.delivery_tag, time(), self._token, record, len(entry)]
            if not self._scripts.claim(keys=keys, args=args, client=client):
                raise TakenBack(message.delivery_tag)

    def _owning_keys(self) -> list[str]:
        return [OWNERS, OWNER_OF, owned_key(self._token)]

    def _drop(self, fetched: Fetched) -> None:
        """Forget an entry that is not a message, wherever the fetch put it."""
        if fetched.into is not None:
            self._forget(fetched.into, fetched.entry)
        elif fetched.tag is not None:  # recorded by the fetch: taken off unacked again
            self.qos._remove_from_indices(fetched.tag).execute()

    def _forget(self, into: str, entry: bytes) -> None:
        with self.conn_or_acquire() as client:
            client.lrem(into, 1, entry)

    def _kombu_read(self, **options: Any) -> Any:
        """kombu's BRPOP read, dropping what is not a message (Redis without LMOVE)."""
        qos = self.qos
        qos.appended = False
        try:
            return super()._brpop_read(**options)  # type: ignore[no-untyped-call]
        except UNFIT as unfit:
            if qos.appended:  # a message, that failed in the consumer: not ours to hide
                raise
            log.error("dropped an entry of a queue that is not a message: %r", unfit)
            return True

    def _poll_error(self, type: Any, **options: Any) -> Any:
        if type != "BRPOP" or not self._reliable:
            return super()._poll_error(type, **options)  # type: ignore[no-untyped-call]
        # kombu reads the reply and throws it away: a message the script recorded comes back
        # after the visibility timeout, one a BLMOVE moved goes back with the next fetch.
        self._dirty = True
        sent, self._fetch = self._fetch, None
        try:
            command = sent[0] if sent else "EVALSHA"
            return self.client.parse_response(self.client.connection, command)
        finally:
            self._in_poll = None  # type: ignore[assignment]

    # -- what Redis can do -------------------------------------------------------------------

    def _fetches_reliably(self) -> bool:
        if self._reliable is None:
            reliable = self._can_fetch_reliably()
            if reliable:
                self._load_scripts()
            self._reliable = reliable
        return self._reliable

    def _can_fetch_reliably(self) -> bool:
        if self.global_keyprefix or not self.ack_emulation:
            log.warning(
                "the broker channel pops messages as kombu does (global_keyprefix or no ack "
                "emulation): a worker killed while it takes one loses it"
            )
            return False
        with self.conn_or_acquire() as client:
            try:
                client.execute_command("LMOVE", PROBE, PROBE, "RIGHT", "LEFT")
            except self.ResponseError:
                log.warning(
                    "Redis has no LMOVE (6.2 or later): messages are popped as kombu does, and "
                    "a worker killed while it takes one loses it"
                )
                return False
        return True

    def _connparams(self, asynchronous: bool = False) -> Any:
        # Every connection of this channel names itself by its token: one still open is how
        # the others tell this consumer alive (`keep_inflight`).
        params = super()._connparams(asynchronous)  # type: ignore[no-untyped-call]
        params["client_name"] = client_name(self.client_name, self._token)
        return params

    def _load_scripts(self) -> None:
        with self.conn_or_acquire() as client:
            self._scripts = Scripts(client)
            client.script_load(FETCH)  # the fetch is sent raw, by its digest alone

    # -- keeping the in-flight lists ---------------------------------------------------------

    @property
    def owner_timeout(self) -> float:
        given = self.inflight_owner_timeout
        return float(given) if given else 3.0 * max(self.unacked_restore_interval, 1)

    def keep_inflight(self) -> None:
        """Tell Redis this consumer is alive, give back the in-flight lists of consumers silent
        for the owner timeout, and the unacknowledged messages of those among them that are
        dead (at most every third of it)."""
        # A channel that consumes (not one that only publishes), in the process that opened it.
        if self._pid != os.getpid() or self.closed or not self.active_queues:
            return
        if not self._fetches_reliably():
            return
        now = monotonic()
        if now - self._kept_at < self.owner_timeout / 3:
            return
        self._kept_at = now
        assert self._scripts is not None
        try:
            with self.conn_or_acquire() as client:
                silent = self._scripts.keep(client, self._token, self._lists, self.owner_timeout)
                moved = self._scripts.give_back_silent(client, self.owner_timeout)
                restored = self._restore_dead(client, silent) if silent else 0
        except self.ResponseError:  # a full Redis refusing writes: the next interval retries
            log.warning("in-flight lists not kept", exc_info=True)
            return
        if moved:
            log.warning(GAVE_BACK_IN_FLIGHT, moved, self.owner_timeout)
        if restored:
            log.warning(GAVE_BACK_UNACKED, restored)

    def _restore_dead(self, client: Any, silent: list[str]) -> int:
        """Give back what the silent consumers with no connection left held unacknowledged;
        returns how many messages went back."""
        assert self._scripts is not None
        connected = self._connected(client)
        if connected is None:
            # Dead or busy, nobody can tell: what they hold waits for the visibility timeout,
            # and those holding nothing more are forgotten.
            for token in silent:
                self._scripts.disown(client, token)
            return 0
        restored = 0
        for token in sorted(set(silent) - connected):
            tags = list(client.smembers(owned_key(token)))
            if tags:
                # The last taken first: each goes to the consuming end, so the first taken is
                # delivered first again (kombu's visibility timeout restores in that order too).
                taken = client.zmscore(self.unacked_index_key, tags)
                ordered = sorted(zip(taken, tags, strict=True), key=lambda pair: -(pair[0] or 0))
                for _, tag in ordered:
                    restored += self._give_back_owned(client, token, tag)
            self._scripts.disown(client, token)
        return restored

    def _give_back_owned(
        self, client: Any, token: str, tag: bytes | str, leftmost: bool = False
    ) -> int:
        """Put a message of consumer `token` (a dead one's, or ours) back where kombu's restore
        would (the consuming end of each queue it is routed to, or the other end, marked
        redelivered), if it is still recorded as that consumer's: at most once, however many
        consumers find it dead, and never once another consumer took it."""
        assert self._scripts is not None
        record = client.hget(self.unacked_key, tag)
        pushes = Pushes()
        if record is not None:
            try:
                message, exchange, routing_key = loads(record.decode())  # type: ignore[no-untyped-call]
            except UNFIT:  # not kombu's record: kombu's own restore fails on it too
                message = None
            else:
                restore: Any = self._do_restore_message  # kombu's, untyped
                restore(message, exchange, routing_key, pushes, leftmost)
            if not pushes.pushed:  # unreadable, or kombu could not route it (and logged why)
                log.error("unacknowledged message %s is left to the visibility timeout", tag)
        keys = [self.unacked_index_key, self.unacked_key, OWNER_OF, owned_key(token)]
        args = [tag, record or b"", token, "left" if leftmost else "right"]
        for queue, payload in pushes.pushed:
            keys.append(queue)
            args.append(payload)
        return int(self._scripts.restore(keys=keys, args=args, client=client))

    def _connected(self, client: Any) -> set[str] | None:
        """The consumers with a connection open; None if Redis refuses CLIENT LIST (its ACL):
        then what a dead one held waits for the visibility timeout."""
        if not self._sees_clients:
            return None
        try:
            return named_owners(client.client_list(_type="normal"))
        except self.ResponseError as refused:
            self._sees_clients = False
            log.warning(
                "Redis refused CLIENT LIST (%s): what a dead worker held unacknowledged comes "
                "back after the visibility timeout only",
                refused,
            )
            return None

    def _give_back_ours(self) -> None:
        assert self._scripts is not None
        with self.conn_or_acquire() as client:
            moved = self._scripts.give_back(client, self._lists)
        self._dirty = False
        if moved:
            log.warning("%d messages taken and not recorded went back to their queues", moved)

    def close(self) -> None:
        if self._reliable and not self.closed and self._pid == os.getpid():
            self._closing = True
            if self._in_poll:
                with suppress(Empty):
                    self._brpop_read()
            assert self._scripts is not None
            try:
                self._give_back_ours()
                # What it holds goes back now (kombu's close would, once its connections are
                # closed, on a new one), and it is forgotten among the owners, not left for the
                # others to find gone.
                if self._qos is not None:
                    self._qos.restore_unacked_once()
                with self.conn_or_acquire() as client:
                    self._scripts.disown(client, self._token)
            except (*self.connection_errors, self.ResponseError):
                log.info("what the consumer held is left for another consumer to give back")
        super().close()  # type: ignore[no-untyped-call]
