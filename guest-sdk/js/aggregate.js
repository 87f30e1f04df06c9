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
