// A policy (choreography) as one function from a decoded event to the commands it causes:
//
//   export const policyHandler = policy({ eventTypes, react });
//
// `react(event)` returns a list of `command(aggregate, stream, commandType, payload, commandId)`
// (empty, null or undefined: nothing to do). Derive the command id from the event
// (`${event.id}/release`) so a redelivered event sends nothing twice. An exception, or a return
// value of another shape, is a failure naming the handler, the event and where it was thrown.
import { encode, event, failure } from "./common.js";

export { log } from "./common.js";

const show = (value) => {
  let text;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
};

/** Where a failure of a policy or saga call happened: the handler and what it was given. */
export const about = (raw) => `event \`${raw.eventType}\` ${raw.eventId}`;

/** The WIT `failure` of handler call `context` for `error` (thrown while handling event `index`). */
export function failureIn(context, error, index = null) {
  const f = failure(error, index);
  return { ...f, message: `${context}: ${f.message}` };
}

/** Throws a TypeError saying what `handler` returned instead of `expected`. */
export function wrongShape(handler, value, expected) {
  const error = new TypeError(`${handler} returned ${show(value)}, expected ${expected}`);
  // Thrown here, not in the plugin's code: a location in the SDK would only mislead.
  error.stack = "";
  throw error;
}

const commands = new WeakSet();

/** A command for the host to send to `aggregate`'s `stream` (payload: any MessagePack-able value). */
export function command(aggregate, stream, commandType, payload, commandId) {
  for (const [name, value] of Object.entries({ aggregate, stream, commandType, commandId })) {
    if (typeof value !== "string" || !value) {
      throw new TypeError(`command ${name} must be a non-empty string, got ${show(value)}`);
    }
  }
  const out = { aggregate, stream, commandType, commandId, payload: encode(payload ?? {}) };
  commands.add(out);
  return out;
}

/** `value` if `command()` made it (or null when `optional`), else a TypeError naming `handler`. */
export function checkCommand(value, handler, optional = false) {
  if (commands.has(value)) return value;
  if (optional && value == null) return null;
  return wrongShape(handler, value, optional ? "command(...) or null" : "command(...)");
}

export function policy({ eventTypes, react }) {
  const known = new Set(eventTypes);
  return {
    eventTypes: () => [...eventTypes],
    react(events) {
      return events.map((raw, index) => {
        if (!known.has(raw.eventType)) return [];
        try {
          const produced = react(event(raw)) ?? [];
          if (!Array.isArray(produced)) wrongShape("react", produced, "a list of command(...)");
          return produced.map((c) => checkCommand(c, "react"));
        } catch (error) {
          throw failureIn(`react on ${about(raw)}`, error, index);
        }
      });
    },
  };
}
