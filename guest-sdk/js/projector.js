// A projector as one function over a decoded event and the read model:
//
//   export const projectorHandler = projector({ eventTypes, project });
//
// `project(event, model)` reads and writes the projector's own rows (`model.get/put/delete/
// scan`, values are MessagePack-able JS values). The component is built for the
// `json-projector` world (scripts/componentize binds `projectorHandler` to its export): a batch
// arrives as one JSON string, parsed natively once, and read-model values cross as JSON strings
// (see common.js). An exception is a failure naming the event.
import * as readModel from "factline:plugin/json-read-model@0.1.0";

import { failure, parseJson, stringifyJson } from "./common.js";

export { log } from "./common.js";

// One runtime exposes the interface's functions as named exports, another as a default object.
const store = readModel.default ?? readModel;

// A batch's writes, kept as JSON text and handed to the host once per key when the batch ends
// (or before a scan): a row read and rewritten by every event of a batch crosses the boundary
// twice, not twice per event. Reads see them, as the host's own overlay would; a failed batch
// hands over nothing, as the host would discard it.
const pending = new Map();

function flush() {
  for (const [key, text] of pending) {
    if (text === null) store.delete(key);
    else store.put(key, text);
  }
  pending.clear();
}

export const model = {
  get(key) {
    const text = pending.has(key) ? pending.get(key) : store.get(key);
    return text == null ? null : parseJson(text);
  },
  put(key, value) {
    pending.set(key, stringifyJson(value));
  },
  delete(key) {
    pending.set(key, null);
  },
  /** `[key, value]` pairs whose key starts with `prefix`, in key order. */
  scan(prefix, startAfter = null, limit = 100) {
    flush();
    return store.scanPrefix(prefix, startAfter, limit).map(([key, text]) => [key, parseJson(text)]);
  },
};

// One object of the host's batch (snake_case envelope fields) as the SDK's event.
const event = (o) => ({
  id: o.event_id,
  type: o.event_type,
  stream: o.stream,
  version: o.stream_version,
  occurredAt: o.occurred_at,
  schemaVersion: o.schema_version,
  payload: o.payload ?? {},
});

export function projector({ eventTypes = [], project }) {
  return {
    eventTypes: () => [...eventTypes],
    project(batch) {
      pending.clear();
      let index = null;
      try {
        const events = parseJson(batch);
        for (index = 0; index < events.length; index++) project(event(events[index]), model);
      } catch (error) {
        pending.clear();
        throw failure(error, index);
      }
      flush();
    },
  };
}

/**
 * The optional `readModelEvolution` export (world `versioned-projector`):
 *
 *   export const readModelEvolution = readModelVersion(2);
 *
 * A new build declaring another version gets its read model rebuilt from offset 0 beside the
 * running one.
 */
export function readModelVersion(version) {
  return { readModelVersion: () => version };
}
