// An aggregate (the decider model) as three plain functions:
//
//   export const aggregateHandler = aggregate({ initial, eventTypes, decide, evolve });
//
// `decide(state, command)` returns new events as `[eventType, payload]` or
// `[eventType, payload, schemaVersion]`, or throws `Rejection`; `evolve(state, event)` returns
// the next state. Any other exception is a failure, retried and then parked by the host.
import { Rejection, command, decode, encode, event, failure } from "./common.js";

export { Rejection, ensure, log } from "./common.js";

export function aggregate({ initial, eventTypes, decide, evolve }) {
  const initialBytes = encode(initial);
  return {
    eventTypes: () => [...eventTypes],
    initialState: () => initialBytes,
    evolve(state, events) {
      let index = null;
      try {
        let value = state.length ? decode(state) : initial;
        for (index = 0; index < events.length; index++) {
          value = evolve(value, event(events[index]));
        }
        return encode(value);
      } catch (error) {
        throw failure(error, index);
      }
    },
    decide(state, raw) {
      try {
        return decide(decode(state), command(raw)).map(([eventType, payload, schemaVersion]) => ({
          eventType,
          schemaVersion: schemaVersion ?? 1,
          payload: encode(payload),
          metadata: [],
        }));
      } catch (error) {
        if (error instanceof Rejection) {
          throw { tag: "rejected", val: { code: error.code, message: error.reason } };
        }
        throw { tag: "failed", val: failure(error, null) };
      }
    },
  };
}

/**
 * The optional `schemaEvolution` export (world `evolving-aggregate`):
 *
 *   export const schemaEvolution = evolution({ stateSchema, upcasts, upcast });
 *
 * `stateSchema`: version of the state's shape (bump it when the state changes incompatibly: the
 * host then ignores snapshots of the old shape). `upcasts`: the old `[eventType, schemaVersion]`
 * pairs `upcast(event)` rewrites; it returns the event one step newer as
 * `[eventType, payload, schemaVersion]`, and is repeated until the event is current, for every
 * reader of the stream.
 */
export function evolution({ stateSchema = 1, upcasts = [], upcast }) {
  const old = upcasts.map(([type, version]) => [String(type), Number(version)]);
  if (old.length && typeof upcast !== "function") {
    throw new TypeError("evolution({ upcasts }) needs an upcast function");
  }
  const isOld = (raw) => old.some(([t, v]) => t === raw.eventType && v === raw.schemaVersion);
  const upcastOne = (raw, index) => {
    for (let steps = 1; isOld(raw); steps++) {
      const [type, version] = [raw.eventType, raw.schemaVersion];
      try {
        if (steps > old.length) throw new Error(`upcasting \`${type}\` schema ${version} does not end`);
        const next = upcast(event(raw));
        if (!Array.isArray(next) || next.length !== 3 || typeof next[0] !== "string" || !Number.isInteger(next[2])) {
          throw new TypeError("upcast must return [eventType, payload, schemaVersion]");
        }
        if (next[0] === type && next[2] === version) {
          throw new Error(`the upcaster left \`${type}\` at schema ${version}`);
        }
        raw = { ...raw, eventType: next[0], schemaVersion: next[2], payload: encode(next[1]) };
      } catch (error) {
        const f = failure(error, index);
        throw { ...f, message: `upcast of event \`${type}\` ${raw.eventId}: ${f.message}` };
      }
    }
    return raw;
  };
  return {
    stateSchema: () => stateSchema,
    upcasts: () => old,
    upcast: (events) => events.map(upcastOne),
  };
}
