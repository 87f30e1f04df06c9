"""factline's Python guest SDK: plugins of every kind as plain functions over decoded payloads.

A plugin module (``app.py``) binds one handler class for componentize-py, which looks it up by
the name of the world's export interface::

    import factline

    def project(event, model):
        model.put(event.stream, {"last": event.type})

    ProjectorHandler = factline.projector(project, event_types=["order.created"])

The kinds: ``aggregate`` (``AggregateHandler``), ``projector`` (``ProjectorHandler``),
``policy`` (``PolicyHandler``) and ``saga`` (``SagaHandler``); the optional exports
``evolution`` (``SchemaEvolution``, world ``evolving-aggregate``) and ``read_model_version``
(``ReadModelEvolution``, world ``versioned-projector``) go beside an aggregate or projector.

Payloads, states and read-model values are stored as MessagePack; the plugin sees dicts, lists,
strings and ints. An aggregate's, policy's and saga's values cross as MessagePack (``umsgpack``, pure Python, bundled
into the component). A projector's cross as JSON text, which CPython decodes in C: it is built
for the ``json-projector`` world (``scripts/componentize`` picks it), so a whole batch arrives as
one string and read-model values as strings, and the host transcodes, losslessly
(``host/src/plugin/boundary.rs``: bytes, extension values and maps with non-string keys travel
as one-key ``$`` objects, which ``decode_json``/``encode_json`` undo). A ``Rejection`` raised by
``decide`` is a business "no" (never retried); any other exception is a failure the host retries
and then parks, with the index of the event that raised it; in a policy or saga the message also
names the handler and the event (``react on event `order.cancelled` <id>: KeyError: ...``).
"""

import dataclasses
import json
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


def _unescape(obj):
    """``object_hook`` of ``decode_json``: the host's one-key ``$`` escapes back to values."""
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == "$bin":
            return bytes(value)
        if key == "$ext":
            return umsgpack.Ext(value[0], bytes(value[1]))
        if key == "$map":
            return {tuple(k) if type(k) is list else k: v for k, v in value}
    return obj


# Made once: `json.loads`/`json.dumps` with arguments build a new decoder/encoder per call.
_UNESCAPING = json.JSONDecoder(object_hook=_unescape)


def decode_json(text):
    """The host's JSON text to Python, as ``decode`` reads the same MessagePack; empty or
    null: ``{}``."""
    if not text:
        return {}
    # No escape in the text (the common case): the C decoder alone, no hook called per object.
    value = _UNESCAPING.decode(text) if '"$' in text else json.loads(text)
    return {} if value is None else value


_NESTED = (dict, list, tuple)


def _plain(value):
    """Whether JSON can say ``value`` without escapes: every dict key a string, and no dict of
    one key starting with ``$`` (bytes are escaped by ``_default``, during the C encoding)."""
    if type(value) is dict:
        if len(value) == 1:
            for key in value:
                if type(key) is not str or key[:1] == "$":
                    return False
        for key, item in value.items():
            if type(key) is not str or (type(item) in _NESTED and not _plain(item)):
                return False
        return True
    return all(type(item) not in _NESTED or _plain(item) for item in value)


def _escaped(value):
    """``value`` with what ``_plain`` found spelled as the host's escapes."""
    if type(value) is dict:
        keys = list(value)
        if any(type(k) is not str for k in keys) or (len(keys) == 1 and keys[0][:1] == "$"):
            return {"$map": [[_escaped(k), _escaped(v)] for k, v in value.items()]}
        return {k: _escaped(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return [_escaped(item) for item in value]
    return value


def _default(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bin": list(bytes(value))}
    if isinstance(value, umsgpack.Ext):
        return {"$ext": [value.type, list(value.data)]}
    raise TypeError(f"{type(value).__name__} cannot be stored: {value!r:.60}")


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_default)


def encode_json(value):
    """Python to the JSON text the host stores as the MessagePack ``encode`` would write."""
    if type(value) in _NESTED and not _plain(value):
        value = _escaped(value)
    return _ENCODER.encode(value)


def log(message, level="info"):
    _logging.log(getattr(_logging.Level, level.upper()), str(message))


class Event:
    """A delivered event: envelope fields plus the decoded ``payload``."""

    __slots__ = ("id", "type", "stream", "version", "occurred_at", "schema_version", "payload",
                 "raw")

    def __init__(self, raw, decode_payload=decode):
        self.raw = raw
        self.id = raw.event_id
        self.type = raw.event_type
        self.stream = raw.stream
        self.version = raw.stream_version
        self.occurred_at = raw.occurred_at
        self.schema_version = raw.schema_version
        self.payload = decode_payload(raw.payload)


def _json_event(fields):
    """An ``Event`` from one object of a ``json-projector`` batch (its ``raw`` is the object)."""
    event = Event.__new__(Event)
    event.raw = fields
    event.id = fields["event_id"]
    event.type = fields["event_type"]
    event.stream = fields["stream"]
    event.version = fields["stream_version"]
    event.occurred_at = fields["occurred_at"]
    event.schema_version = fields["schema_version"]
    payload = fields["payload"]
    event.payload = {} if payload is None else payload
    return event


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
    """The projector's key-value store; values are MessagePack-able Python values (they cross
    the boundary as JSON text, see the module's doc).

    A batch's writes are kept here, encoded, and handed to the host once per key when the batch
    ends (or before a scan): a row read and rewritten by every event of a batch crosses the
    boundary twice, not twice per event. Reads see them, as the host's own overlay would; a
    failed batch hands over nothing, as the host would discard it."""

    def __init__(self, store):
        self._store = store
        self._pending = {}

    def get(self, key):
        if key in self._pending:
            value = self._pending[key]
        else:
            value = self._store.get(key)
        return None if value is None else decode_json(value)

    def put(self, key, value):
        self._pending[key] = encode_json(value)

    def delete(self, key):
        self._pending[key] = None

    def scan(self, prefix, start_after=None, limit=100):
        """``(key, value)`` pairs whose key starts with ``prefix``, in key order."""
        self._flush()
        rows = self._store.scan_prefix(prefix, start_after, limit)
        return [(key, decode_json(value)) for key, value in rows]

    def _flush(self):
        for key, value in self._pending.items():
            if value is None:
                self._store.delete(key)
            else:
                self._store.put(key, value)
        self._pending.clear()


def projector(project, event_types=()):
    """The ``ProjectorHandler`` class for ``project(event, model)``; no event types: all."""
    from wit_world.imports import json_read_model

    model = ReadModel(json_read_model)
    types = list(event_types)

    class ProjectorHandler:
        def event_types(self):
            return types

        def project(self, events):
            model._pending.clear()
            index = None
            try:
                # The batch is one JSON array: one parse in C for all its events.
                for index, fields in enumerate(decode_json(events)):
                    project(_json_event(fields), model)
            except Exception as error:
                model._pending.clear()
                raise _failure(index, error)
            model._flush()

    return ProjectorHandler


# Optional exports: the world `evolving-aggregate` (`SchemaEvolution`) and `versioned-projector`
# (`ReadModelEvolution`). A plugin binds them beside its handler and builds for that world.

def evolution(state_schema=1, upcasts=(), upcast=None):
    """The ``SchemaEvolution`` class of an aggregate (world ``evolving-aggregate``).

    ``state_schema``: version of the state's shape (bump it when the state changes
    incompatibly: the host then ignores snapshots of the old shape). ``upcasts``: the old
    ``(event_type, schema_version)`` pairs ``upcast(event)`` rewrites; it returns the event one
    step newer as ``(event_type, payload, schema_version)``, and is repeated until the event is
    current, for every reader of the stream.
    """
    old = [(str(t), int(v)) for t, v in upcasts]
    if old and upcast is None:
        raise TypeError("evolution(upcasts=...) needs an upcast function")
    stale = frozenset(old)

    class SchemaEvolution:
        def state_schema(self):
            return state_schema

        def upcasts(self):
            return old

        def upcast(self, events):
            return [_upcast_one(index, raw) for index, raw in enumerate(events)]

    def _upcast_one(index, raw):
        steps = 0
        while (raw.event_type, raw.schema_version) in stale:
            before = (raw.event_type, raw.schema_version)
            steps += 1
            try:
                if steps > len(old):
                    raise ValueError(f"upcasting `{before[0]}` schema {before[1]} does not end")
                new = upcast(Event(raw))
                if not (isinstance(new, tuple) and len(new) == 3 and isinstance(new[0], str)
                        and isinstance(new[2], int)):
                    raise TypeError(f"upcast returned {_show(new)}, expected a tuple "
                                    "(event_type, payload, schema_version)")
                if (new[0], new[2]) == before:
                    raise ValueError(f"the upcaster left `{before[0]}` at schema {before[1]}")
                raw = dataclasses.replace(raw, event_type=new[0], schema_version=new[2],
                                          payload=encode(new[1]))
            except Exception as error:
                raise _failed(f"upcast of {_about(raw)}", error, index)
        return raw

    return SchemaEvolution


def read_model_version(version):
    """The ``ReadModelEvolution`` class of a projector (world ``versioned-projector``): a new
    build declaring another version gets its read model rebuilt from offset 0 beside the
    running one."""
    version = int(version)

    class ReadModelEvolution:
        def read_model_version(self):
            return version

    return ReadModelEvolution


# Policies and sagas: events in, commands out.

def _show(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _about(raw):
    return f"event `{raw.event_type}` {raw.event_id}"


def _failed(context, error, index=None):
    """A failure of handler call ``context`` (the handler, and the event it was given)."""
    failure = _failure(index, error).value
    failure.message = f"{context}: {failure.message}"
    return Err(failure)


def command(aggregate, stream, command_type, payload, command_id):
    """A command for the host to send to ``aggregate``'s ``stream``. Derive ``command_id`` from
    what caused it (``f"{event.id}/release"``) so a redelivered event sends nothing twice."""
    for name, value in (("aggregate", aggregate), ("stream", stream),
                        ("command_type", command_type), ("command_id", command_id)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"command {name} must be a non-empty string, got {_show(value)}")
    return _types.OutgoingCommand(aggregate=aggregate, stream=stream, command_type=command_type,
                                  command_id=command_id,
                                  payload=encode({} if payload is None else payload))


def _command(value, handler, optional=False):
    if isinstance(value, _types.OutgoingCommand) or (optional and value is None):
        return value
    expected = "factline.command(...) or None" if optional else "factline.command(...)"
    raise TypeError(f"{handler} returned {_show(value)}, expected {expected}")


def policy(react, event_types):
    """The ``PolicyHandler`` class for ``react(event)``, which returns the commands the event
    causes: a list of ``command(...)`` (empty or ``None``: nothing to do)."""
    types = list(event_types)
    known = frozenset(types)

    class PolicyHandler:
        def event_types(self):
            return types

        def react(self, events):
            lists = []
            for index, raw in enumerate(events):
                if raw.event_type not in known:
                    lists.append([])
                    continue
                try:
                    produced = react(Event(raw))
                    produced = [] if produced is None else produced
                    if not isinstance(produced, (list, tuple)):
                        raise TypeError(f"react returned {_show(produced)}, expected a list of "
                                        "factline.command(...)")
                    lists.append([_command(c, "react") for c in produced])
                except Exception as error:
                    raise _failed(f"react on {_about(raw)}", error, index)
            return lists

    return PolicyHandler


class Succeeded:
    """A saga's verdict: the answer completes the step; ``data`` is the instance's new data."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


class Failed:
    """A saga's verdict: the answer fails the step (compensation follows), for ``reason``."""

    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = str(reason)


NOT_MINE = object()
"""A saga's verdict: the answer belongs to another step or instance."""


def step(name, timeout_ms, compensable=False):
    """A saga step: the host fails it when no answer comes within ``timeout_ms``;
    ``compensable`` steps are undone (``compensate``) when a later one fails."""
    return (str(name), int(timeout_ms), bool(compensable))


def saga(name, trigger_types, answer_types, steps, start, execute, compensate, judge):
    """The ``SagaHandler`` class of an orchestrated saga; the host runs its instances.

    ``start(trigger)`` returns ``(instance_id, data)`` or ``None`` (ignore the event);
    ``execute(step, data)`` the ``command(...)`` performing a step; ``compensate(step, data)``
    the one undoing it, or ``None``; ``judge(step, data, answer)`` ``Succeeded(new_data)``,
    ``Failed(reason)`` or ``NOT_MINE``. ``data`` is any MessagePack-able value.
    """
    from wit_world.exports import saga_handler as _saga

    triggers, answers = list(trigger_types), list(answer_types)
    is_trigger, is_answer = frozenset(triggers), frozenset(answers)
    definition = _saga.SagaDefinition(
        name=name, trigger_types=triggers, answer_types=answers,
        steps=[_saga.StepDefinition(name=n, timeout_ms=t, compensable=c) for n, t, c in steps])

    class SagaHandler:
        def definition(self):
            return definition

        def start(self, trigger):
            if trigger.event_type not in is_trigger:
                return None
            try:
                started = start(Event(trigger))
                if started is None:
                    return None
                if not (isinstance(started, tuple) and len(started) == 2
                        and isinstance(started[0], str) and started[0]):
                    raise TypeError(f"start returned {_show(started)}, expected None or a tuple "
                                    "(instance_id, data)")
                return _saga.Started(instance_id=started[0], data=encode(started[1]))
            except Exception as error:
                raise _failed(f"start on {_about(trigger)}", error)

        def execute(self, step, data):
            try:
                return _command(execute(step, decode(data)), "execute")
            except Exception as error:
                raise _failed(f"execute of step `{step}`", error)

        def compensate(self, step, data):
            try:
                return _command(compensate(step, decode(data)), "compensate", optional=True)
            except Exception as error:
                raise _failed(f"compensate of step `{step}`", error)

        def judge(self, step, data, answer):
            if answer.event_type not in is_answer:
                return _saga.Verdict_NotMine()
            try:
                verdict = judge(step, decode(data), Event(answer))
                if verdict is NOT_MINE:
                    return _saga.Verdict_NotMine()
                if isinstance(verdict, Succeeded):
                    return _saga.Verdict_Succeeded(encode(verdict.data))
                if isinstance(verdict, Failed):
                    return _saga.Verdict_Failed(verdict.reason)
                raise TypeError(f"judge returned {_show(verdict)}, expected Succeeded(data), "
                                "Failed(reason) or NOT_MINE")
            except Exception as error:
                raise _failed(f"judge of step `{step}` on {_about(answer)}", error)

    return SagaHandler
