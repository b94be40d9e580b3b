"""What a consumer of our Redis channel (tasks/fetch.py) records as unacknowledged, and how it
gives it back.

A message the fetch took is recorded, with its consumer, by the fetch's own script; kombu's QoS
only keeps it in the process then. An ack, a reject or a restore takes the consumer's record off
in kombu's transaction. What a consumer gives back itself (when it closes, and its requeues)
goes back only while it is still its own, through the script that gives back a dead consumer's
messages: one taken for dead whose messages another consumer took since gives nothing back twice.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from tasks.fetch_scripts import OWNER_OF, owned_key


class FetchingQoS(kombu_redis.QoS):
    appended = False  # a message was read and recorded as unacknowledged (`_deliver_fetched`)

    def append(self, message: Any, delivery_tag: Any) -> None:
        channel = self.channel
        fetched = channel._fetched
        if fetched is not None and fetched.tag == delivery_tag:
            channel._fetched = None
            if fetched.into is not None:  # taken by the blocking wait: recorded now
                channel._claim(fetched.into, fetched.entry, message)
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
        self.appended = True

    def _remove_from_indices(self, delivery_tag: Any, pipe: Any = None) -> Any:
        # An ack, a reject or a restore: the message is no longer this consumer's to hold.
        pipe = super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[no-untyped-call]
        channel = self.channel
        if channel._reliable:
            pipe.hdel(OWNER_OF, delivery_tag).srem(owned_key(channel._token), delivery_tag)
        return pipe

    def restore_unacked(self, client: Any = None) -> None:
        # Closing: what this consumer still holds goes back, each message only if it is still
        # its own. One taken for dead (its connections dropped, a partition) whose messages went
        # back and were taken by another would otherwise deliver them a second time.
        channel = self.channel
        if not channel._reliable:
            super().restore_unacked(client)  # type: ignore[no-untyped-call]
            return
        with channel.conn_or_acquire(client) as client:
            # The last taken first, so that they come again in the order they came.
            for tag in reversed(list(self._delivered)):
                channel._give_back_owned(client, channel._token, tag)
        self._delivered.clear()

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        channel = self.channel
        if not (requeue and channel._reliable):
            super().reject(delivery_tag, requeue)  # type: ignore[no-untyped-call]
            return
        with channel.conn_or_acquire() as client:  # to the back of its queue, as kombu's
            channel._give_back_owned(client, channel._token, delivery_tag, leftmost=True)
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        # kombu calls this at the consumer's start and every `unacked_restore_interval`, for one
        # channel of the connection: the in-flight lists of all of them are kept here.
        for channel in list(getattr(self.channel.connection.cycle, "_channels", ())):
            keep = getattr(channel, "keep_inflight", None)
            if keep is not None:
                keep()
        super().restore_visible(*args, **kwargs)  # type: ignore[no-untyped-call]
