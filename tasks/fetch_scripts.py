"""The Redis scripts of our fetch (tasks/fetch.py), and the names of the keys they use.

Every in-flight list is named in the registry, a sorted set scored with the time (Redis's
clock) its owner was last heard from; `RELEASE` gives back the lists of owners silent for a
while, and `CLAIM` records a message only if it is still in its consumer's list.

Every message recorded as unacknowledged is also given its consumer (`_kombu.unacked_owner`,
delivery tag to token, kept exactly as `unacked` is) and named in that consumer's own set
(`_kombu.owned.<token>`, to find them), and the consumer is in the owners' sorted set
(`_kombu.owners`), scored the same way as the registry: a consumer found silent there, with no
connection to Redis left under its name, is dead, and `RESTORE` gives back each message it
still holds (tasks/fetch.py, `keep_inflight`). A consumer's own restores (when it closes, and its
requeues) go through `RESTORE` too, so that none gives back a message another consumer took since.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REGISTRY = "_kombu.inflight"
PREFIX = REGISTRY + "."
OWNERS = "_kombu.owners"
OWNER_OF = "_kombu.unacked_owner"
OWNED = "_kombu.owned."
TOKEN_LENGTH = 32  # uuid4().hex
# A list's queue key starts here (1-based, as Lua counts) in the list's own key.
QUEUE_STARTS = len(PREFIX) + TOKEN_LENGTH + 1 + 1

# Give a recorded message its consumer (KEYS[4] the owners, KEYS[5] each message's owner, KEYS[6]
# the consumer's set; ARGV[3] the consumer's token), and the consumer a place among the owners
# if it has none yet.
OWN = """
local function own(tag)
    redis.call('HSET', KEYS[5], tag, ARGV[3])
    redis.call('SADD', KEYS[6], tag)
    if not redis.call('ZSCORE', KEYS[4], ARGV[3]) then
        local time = redis.call('TIME')
        redis.call('ZADD', KEYS[4], time[1] + time[2] / 1000000, ARGV[3])
    end
end
"""

# KEYS: the registry, kombu's unacked index and unacked hash, the owners, each message's owner
# and the consumer's set, then the queue keys in the order to try. ARGV[1]: the time to score
# the message with in the index (the consumer's, as kombu's); ARGV[2]: the in-flight list the
# blocking wait that follows an empty scan moves into, scored now, so that nobody gives it back
# while the wait lasts; ARGV[3]: the consumer's token. Returns {queue key, entry, delivery tag}
# for a message, recorded as kombu records it ('[<message>,<exchange>,<routing key>]') and
# owned; {queue key, entry, false} for an entry that is not a message, dropped; nil if all are
# empty.
FETCH = (
    OWN
    + """
local function route(entry)
    local properties = cjson.decode(entry).properties
    local info = properties.delivery_info
    local tag = properties.delivery_tag
    if type(tag) ~= 'string' or info.exchange == nil or info.routing_key == nil then
        error('not a message')
    end
    return tag, cjson.encode(info.exchange) .. ',' .. cjson.encode(info.routing_key)
end
for i = 7, #KEYS do
    local entry = redis.call('RPOP', KEYS[i])
    if entry then
        local fit, tag, routed = pcall(route, entry)
        if not fit then
            return {KEYS[i], entry, false}
        end
        redis.call('ZADD', KEYS[2], ARGV[1], tag)
        redis.call('HSET', KEYS[3], tag, '[' .. entry .. ',' .. routed .. ']')
        own(tag)
        return {KEYS[i], entry, tag}
    end
end
local time = redis.call('TIME')
redis.call('ZADD', KEYS[1], time[1] + time[2] / 1000000, ARGV[2])
return false
"""
)

# KEYS: the in-flight list, kombu's unacked index and unacked hash, the owners, each message's
# owner and the consumer's set. ARGV: the delivery tag, its score in the index (the consumer's
# time, as kombu's), the consumer's token, kombu's record of the message ('[<message>,
# <exchange>,<routing key>]'), the message's length in bytes. Returns 0, recording nothing, if
# the message is no longer in the list (its owner was taken for dead and it went back to its
# queue).
CLAIM = (
    OWN
    + """
local item = string.sub(ARGV[4], 2, tonumber(ARGV[5]) + 1)
if redis.call('LREM', KEYS[1], 1, item) == 0 then
    return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
own(ARGV[1])
return 1
"""
)

# KEYS[1]: the registry. ARGV[1]: where a list's queue key starts in its key; ARGV[2]: an owner
# timeout in seconds, every list whose owner is silent for that long is given back (at most
# 100 per call); or '' and the lists to give back in ARGV[3...]. Returns how many messages
# went back, each to the consuming end of its queue, in the order they had there.
RELEASE = """
local lists
if ARGV[2] ~= '' then
    local now = redis.call('TIME')
    local before = now[1] + now[2] / 1000000 - tonumber(ARGV[2])
    lists = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', before, 'LIMIT', 0, 100)
else
    lists = {unpack(ARGV, 3)}
end
local moved = 0
for _, list in ipairs(lists) do
    local queue = string.sub(list, tonumber(ARGV[1]))
    while redis.call('LMOVE', list, queue, 'LEFT', 'RIGHT') do
        moved = moved + 1
    end
    redis.call('ZREM', KEYS[1], list)
end
return moved
"""

# KEYS[1]: the registry, KEYS[2]: the owners. ARGV[1]: the owner timeout in seconds; ARGV[2]:
# a consumer alive now, ARGV[3...]: its in-flight lists. Returns the owners silent for the owner
# timeout (at most 100).
KEEP = """
local now = redis.call('TIME')
local at = now[1] + now[2] / 1000000
redis.call('ZADD', KEYS[2], at, ARGV[2])
for i = 3, #ARGV do
    redis.call('ZADD', KEYS[1], at, ARGV[i])
end
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', at - tonumber(ARGV[1]), 'LIMIT', 0, 100)
"""

# KEYS: kombu's unacked index and unacked hash, each message's owner, the set of the consumer
# giving it back, then the queue keys to put the message back on. ARGV: the delivery tag, kombu's
# record of the message as it was read, the consumer's token, the end of the queues to push at
# ('left': the back, a requeue; 'right': the consuming end, kombu's restore), then the message to
# push on each queue (ARGV[i] on KEYS[i]). Puts it back only if it is still recorded so and still
# that consumer's (restored meanwhile, or taken by another consumer since: not its to give back;
# a message recorded by kombu's own path has no owner); takes it off the consumer's set either
# way. Returns 1 if it went back.
RESTORE = """
redis.call('SREM', KEYS[4], ARGV[1])
local owner = redis.call('HGET', KEYS[3], ARGV[1])
if #KEYS < 5 or redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2]
        or (owner and owner ~= ARGV[3]) then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local push = ARGV[4] == 'left' and 'LPUSH' or 'RPUSH'
for i = 5, #KEYS do
    redis.call(push, KEYS[i], ARGV[i])
end
return 1
"""

# KEYS[1]: the owners, KEYS[2]: a consumer's set, KEYS[3]: each message's owner; ARGV[1]: its
# token. Takes off its set the messages no longer its own (acked or restored by another
# consumer, whose transaction takes them off its own set, not this one's), then forgets it if
# its set is empty; 0 if it still holds some (it was not dead after all, or they wait for the
# visibility timeout: it is looked at again when next silent).
DISOWN = """
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('HGET', KEYS[3], tag) ~= ARGV[1] then
        redis.call('SREM', KEYS[2], tag)
    end
end
if redis.call('SCARD', KEYS[2]) > 0 then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""


class TakenBack(Exception):
    """The message left this consumer's in-flight list before it was recorded: its owner was
    taken for dead and it went back to its queue."""


def list_key(token: str, queue_key: str) -> str:
    """The in-flight list of consumer `token` for the messages it takes from `queue_key`."""
    return f"{PREFIX}{token}.{queue_key}"


def owned_key(token: str) -> str:
    """The set of the delivery tags consumer `token` recorded as unacknowledged."""
    return OWNED + token


def client_name(given: str | None, token: str) -> str:
    """The name each connection of consumer `token` gives itself in Redis (`CLIENT LIST`):
    the one configured (kombu's `client_name`), if any, then the token."""
    return f"{given or 'automations'}.{token}"


def named_owners(clients: Iterable[dict[str, Any]]) -> set[str]:
    """The tokens of the consumers with a connection open, from `CLIENT LIST`."""
    return {
        name[-TOKEN_LENGTH:]
        for name in (str(client.get("name") or "") for client in clients)
        if len(name) > TOKEN_LENGTH and name[-TOKEN_LENGTH - 1] == "."
    }


class Scripts:
    """The scripts, registered on one Redis client (each is sent by its digest, and loaded
    again if Redis forgot it)."""

    def __init__(self, client: Any) -> None:
        self.fetch = client.register_script(FETCH)
        self.claim = client.register_script(CLAIM)
        self.release = client.register_script(RELEASE)
        self.keep_script = client.register_script(KEEP)
        self.restore = client.register_script(RESTORE)
        self.disown_script = client.register_script(DISOWN)

    def give_back_silent(self, client: Any, owner_timeout: float) -> int:
        """Give back the lists of every owner silent for `owner_timeout` seconds."""
        return int(
            self.release(keys=[REGISTRY], args=[QUEUE_STARTS, repr(owner_timeout)], client=client)
        )

    def give_back(self, client: Any, lists: Iterable[str]) -> int:
        """Give back these lists (ours: when closing, or after a fetch whose reply was lost)."""
        named = sorted(lists)
        if not named:
            return 0
        return int(self.release(keys=[REGISTRY], args=[QUEUE_STARTS, "", *named], client=client))

    def keep(
        self, client: Any, token: str, lists: Iterable[str], owner_timeout: float
    ) -> list[str]:
        """Consumer `token` and its lists: alive. Returns the owners silent for the timeout."""
        args = [repr(owner_timeout), token, *sorted(lists)]
        silent = self.keep_script(keys=[REGISTRY, OWNERS], args=args, client=client)
        return [owner.decode() for owner in silent]

    def disown(self, client: Any, token: str) -> bool:
        """Forget consumer `token` (dead, or closing) if it holds nothing more."""
        keys = [OWNERS, owned_key(token), OWNER_OF]
        return bool(self.disown_script(keys=keys, args=[token], client=client))
