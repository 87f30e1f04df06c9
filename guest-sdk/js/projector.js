// A projector as one function over a decoded event and the read model:
//
//   export const projectorHandler = projector({ eventTypes, project });
//
// `project(event, model)` reads and writes the projector's own rows (`model.get/put/delete/
// scan`, values are MessagePack-able JS values). An exception is a failure naming the event.
import * as readModel from "factline:plugin/read-model@0.1.0";

import { decode, encode, event, failure } from "./common.js";

export { log } from "./common.js";

// One runtime exposes the interface's functions as named exports, another as a default object.
const store = readModel.default ?? readModel;

export const model = {
  get(key) {
    const value = store.get(key);
    return value == null ? null : decode(value);
  },
  put(key, value) {
    store.put(key, encode(value));
  },
  delete(key) {
    store.delete(key);
  },
  /** `[key, value]` pairs whose key starts with `prefix`, in key order. */
  scan(prefix, startAfter = null, limit = 100) {
    return store.scanPrefix(prefix, startAfter, limit).map(([key, value]) => [key, decode(value)]);
  },
};

export function projector({ eventTypes = [], project }) {
  return {
    eventTypes: () => [...eventTypes],
    project(events) {
      for (let index = 0; index < events.length; index++) {
        try {
          project(event(events[index]), model);
        } catch (error) {
          throw failure(error, index);
        }
      }
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
