// Shared by every kind of the SDK: the codecs and the envelope
// wrappers. An aggregate's, policy's and saga's values cross the boundary as MessagePack (@msgpack/msgpack, pure JS,
// bundled into the component); a projector's as JSON text, which QuickJS parses natively: it is
// built for the `json-projector` world and the host transcodes, losslessly
// (host/src/plugin/boundary.rs). The stored format stays MessagePack.
import "./text-encoding.js";
import { Decoder, Encoder, ExtData } from "@msgpack/msgpack";
import * as logging from "factline:plugin/logging@0.1.0";

// One of each, reused: building them per call (what `encode()`/`decode()` do) costs more than
// the coding itself in an interpreter. A guest runs one call at a time, so sharing is safe.
const encoder = new Encoder();
const decoder = new Decoder();

export function encode(value) {
  return encoder.encode(value);
}

/** MessagePack to JS; empty bytes or nil read as `{}` (a payload without fields). */
export function decode(bytes) {
  const value = bytes && bytes.length ? decoder.decode(bytes) : null;
  return value ?? {};
}

// The host's one-key `$` escapes (binary, extension values, maps with non-string keys) back to
// what the MessagePack decoder gives for them.
function revive(_key, value) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0][0] === "$") {
      const inner = value[keys[0]];
      if (keys[0] === "$bin") return Uint8Array.from(inner);
      if (keys[0] === "$ext") return new ExtData(inner[0], Uint8Array.from(inner[1]));
      if (keys[0] === "$map") return Object.fromEntries(inner);
    }
  }
  return value;
}

/** JSON text in the host's form to JS. */
export function parseJson(text) {
  // No escape in the text (the common case): the native parser alone, no reviver per value.
  return text.includes('"$') ? JSON.parse(text, revive) : JSON.parse(text);
}

// What JSON cannot say plainly, as the host's escapes; `undefined` is nil, as MessagePack has it.
function replace(_key, value) {
  if (value === undefined) return null;
  // JSON.stringify would write NaN and infinities as null: refuse them instead.
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new RangeError(`${value} cannot be stored (JSON has no NaN or infinity)`);
  }
  if (value === null || typeof value !== "object") return value;
  if (value instanceof Uint8Array) return { $bin: Array.from(value) };
  if (value instanceof ExtData) return { $ext: [value.type, Array.from(value.data)] };
  if (value instanceof Map) return { $map: [...value.entries()] };
  if (!Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0][0] === "$") return { $map: [[keys[0], value[keys[0]]]] };
  }
  return value;
}

/** JS to JSON text that the host stores as the MessagePack `encode` would write. */
export function stringifyJson(value) {
  return JSON.stringify(value, replace);
}

/** Logs through the host's tracing, tagged with the plugin: level trace|debug|info|warn|error. */
export function log(message, level = "info") {
  (logging.default ?? logging).log(level, String(message));
}

/** A business "no" from `decide`: never retried. */
export class Rejection extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.reason = message;
  }
}

/** Throws `Rejection(code, message)` unless `condition` holds. */
export function ensure(condition, code, message) {
  if (!condition) throw new Rejection(code, message);
}

// Integers of the envelope are u64: a BigInt in some guest runtimes, a number in others.
const int = (n) => (typeof n === "bigint" ? Number(n) : n);

/** A delivered event: envelope fields plus the `payload`, decoded by `decodePayload`. */
export function event(raw, decodePayload = decode) {
  return {
    id: raw.eventId,
    type: raw.eventType,
    stream: raw.stream,
    version: int(raw.streamVersion),
    occurredAt: int(raw.occurredAt),
    schemaVersion: raw.schemaVersion,
    payload: decodePayload(raw.payload),
  };
}

export function command(raw) {
  return {
    type: raw.commandType,
    stream: raw.stream,
    issuedAt: int(raw.issuedAt),
    payload: decode(raw.payload),
  };
}

/**
 * Where `error` was thrown, as `file:line in function`: the innermost frame of the plugin's own
 * files, then the innermost of all when that lies elsewhere (the SDK, a library). The bundle's
 * lines are mapped back through the table the build appends (`line-table.mjs`); none: "".
 */
function where(error) {
  const table = globalThis.__factlineLines;
  if (!table || typeof error?.stack !== "string") return "";
  const frames = [];
  for (const m of error.stack.matchAll(/at (\S+) \([^)]*?:(\d+):\d+\)/g)) {
    const mapped = table.lines[Number(m[2]) - 1];
    if (mapped) frames.push({ fn: m[1], source: mapped[0], line: mapped[1] });
  }
  if (!frames.length) return "";
  const shown = [frames[0]];
  const own = frames.find((f) => table.own[f.source]);
  if (own && own !== frames[0]) shown.push(own);
  return shown.map((f) => `${table.sources[f.source]}:${f.line} in ${f.fn}`).join(", called from ");
}

/** The WIT `failure` for an exception thrown while handling event `index` (or none). */
export function failure(error, index) {
  let message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const at = where(error);
  if (at) message += ` (at ${at})`;
  return { message, eventIndex: index ?? null };
}
