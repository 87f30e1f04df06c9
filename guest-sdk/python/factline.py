"""factline's Python guest SDK: plugins as plain functions over decoded payloads.

A plugin module (``app.py``) binds one handler class for componentize-py, which looks it up by
the name of the world's export interface::

    import factline

    def project(event, model):
        model.put(event.stream, {"last": event.type})

    ProjectorHandler = factline.projector(project, event_types=["order.created"])

Payloads, states and read-model values are MessagePack (``umsgpack``, pure Python, bundled into
the component); the plugin sees dicts, lists, strings and ints. A ``Rejection`` raised by
``decide`` is a business "no" (never retried); any other exception is a failure the host retries
and then parks, with the index of the event that raised it.
"""

import traceback

import umsgpack

from componentize_py_types import Err
from wit_world.imports import logging as _logging
from wit_world.imports import types as _types


class Rejection(Exception):
    """The command is refused: ``code`` is machine-readable, ``message`` for people."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def ensure(condition, code, message):
    """Raises ``Rejection(code, message)`` unless ``condition`` holds."""
    if not condition:
        raise Rejection(code, message)


def encode(value):
    return umsgpack.packb(value)


def decode(data):
    """MessagePack to Python; empty bytes or nil read as ``{}`` (a payload without fields)."""
    value = umsgpack.unpackb(data) if data else None
    return {} if value is None else value


def log(message, level="info"):
    _logging.log(getattr(_logging.Level, level.upper()), str(message))


class Event:
    """A delivered event: envelope fields plus the decoded ``payload``."""

    __slots__ = ("type", "stream", "version", "occurred_at", "schema_version", "payload", "raw")

    def __init__(self, raw):
        self.raw = raw
        self.type = raw.event_type
        self.stream = raw.stream
        self.version = raw.stream_version
        self.occurred_at = raw.occurred_at
        self.schema_version = raw.schema_version
        self.payload = decode(raw.payload)


class Command:
    """A command: ``type``, target ``stream``, ``issued_at`` (ms) and the decoded ``payload``."""

    __slots__ = ("type", "stream", "issued_at", "payload", "raw")

    def __init__(self, raw):
        self.raw = raw
        self.type = raw.command_type
        self.stream = raw.stream
        self.issued_at = raw.issued_at
        self.payload = decode(raw.payload)


def _where(error):
    """Where ``error`` was raised: the innermost frame of the plugin's code (not this SDK's),
    then the innermost frame of all when that lies elsewhere (a library), as ``file:line in
    function``."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f.filename != __file__]
    shown = [f for f in frames[-1:]]
    own = [f for f in frames if "site-packages" not in f.filename
           and "guest-packages" not in f.filename]
    if own and own[-1] is not frames[-1]:
        shown.insert(0, own[-1])
    return ", called from ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in reversed(shown))


def _failure(index, error):
    detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    where = _where(error)
    if where:
        detail = f"{detail} (at {where})"
    return Err(_types.Failure(message=detail, event_index=index))


def aggregate(initial, decide, evolve, event_types):
    """The ``AggregateHandler`` class for a decider.

    ``initial``: the state of a new stream (any MessagePack-able value); ``evolve(state, event)``
    returns the next state; ``decide(state, command)`` returns the new events as
    ``(event_type, payload)`` or ``(event_type, payload, schema_version)`` tuples, or raises
    ``Rejection``.
    """
    initial_bytes = encode(initial)
    types = list(event_types)

    class AggregateHandler:
        def event_types(self):
            return types

        def initial_state(self):
            return initial_bytes

        def evolve(self, state, events):
            index = None
            try:
                value = decode(state) if state else initial
                for index, raw in enumerate(events):
                    value = evolve(value, Event(raw))
                return encode(value)
            except Exception as error:
                raise _failure(index, error)

        def decide(self, state, command):
            try:
                produced = decide(decode(state), Command(command))
                return [_new_event(*event) for event in produced]
            except Rejection as rejection:
                raise Err(_types.DecideError_Rejected(
                    _types.Rejection(code=rejection.code, message=rejection.message)))
            except Exception as error:
                raise Err(_types.DecideError_Failed(_failure(None, error).value))

    return AggregateHandler


def _new_event(event_type, payload, schema_version=1):
    return _types.NewEvent(event_type=event_type, schema_version=schema_version,
                           payload=encode(payload), metadata=[])


class ReadModel:
    """The projector's key-value store; values are MessagePack-able Python values."""

    def __init__(self, store):
        self._store = store

    def get(self, key):
        value = self._store.get(key)
        return None if value is None else decode(value)

    def put(self, key, value):
        self._store.put(key, encode(value))

    def delete(self, key):
        self._store.delete(key)

    def scan(self, prefix, start_after=None, limit=100):
        """``(key, value)`` pairs whose key starts with ``prefix``, in key order."""
        rows = self._store.scan_prefix(prefix, start_after, limit)
        return [(key, decode(value)) for key, value in rows]


def projector(project, event_types=()):
    """The ``ProjectorHandler`` class for ``project(event, model)``; no event types: all."""
    from wit_world.imports import read_model

    model = ReadModel(read_model)
    types = list(event_types)

    class ProjectorHandler:
        def event_types(self):
            return types

        def project(self, events):
            for index, raw in enumerate(events):
                try:
                    project(Event(raw), model)
                except Exception as error:
                    raise _failure(index, error)

    return ProjectorHandler
