// An orchestrated saga as four functions over its instance data; the host runs the instances:
//
//   export const sagaHandler = saga({ name, triggerTypes, answerTypes, steps, start, execute,
//     compensate, judge });
//
// `steps` are `step(name, timeoutMs, { compensable })`; `start(trigger)` returns
// `[instanceId, data]` or null (ignore the event); `execute(step, data)` the `command(...)` that
// performs a step, `compensate(step, data)` the one undoing it or null; `judge(step, data,
// answer)` `succeeded(newData)`, `failed(reason)` or `NOT_MINE`. `data` is any
// MessagePack-able value. An exception, or a return value of another shape, is a failure naming
// the handler, the step or event and where it was thrown.
import { decode, encode, event } from "./common.js";
import { about, checkCommand, failureIn, wrongShape } from "./policy.js";

export { log } from "./common.js";
export { command } from "./policy.js";

const verdicts = new WeakSet();
const verdict = (v) => {
  verdicts.add(v);
  return v;
};

/** The answer completes the step; `data` is the instance's new data. */
export const succeeded = (data) => verdict({ tag: "succeeded", data });
/** The answer fails the step (compensation follows), for `reason`. */
export const failed = (reason) => verdict({ tag: "failed", reason: String(reason) });
/** The answer belongs to another step or instance. */
export const NOT_MINE = verdict({ tag: "not-mine" });

/** A step: failed when no answer comes within `timeoutMs`; `compensable` ones are undone. */
export function step(name, timeoutMs, { compensable = false } = {}) {
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
    throw new TypeError(`step \`${name}\`: timeoutMs must be a whole number of milliseconds, got ${timeoutMs}`);
  }
  // The WIT u64 crosses as a JS number in QuickJS (a BigInt traps there).
  return { name: String(name), timeoutMs, compensable: Boolean(compensable) };
}

export function saga({ name, triggerTypes, answerTypes, steps, start, execute, compensate, judge }) {
  const isTrigger = new Set(triggerTypes);
  const isAnswer = new Set(answerTypes);
  const definition = { name, triggerTypes: [...triggerTypes], answerTypes: [...answerTypes], steps };
  return {
    definition: () => definition,
    start(trigger) {
      if (!isTrigger.has(trigger.eventType)) return null;
      try {
        const started = start(event(trigger));
        if (started == null) return null;
        if (!Array.isArray(started) || started.length !== 2 || typeof started[0] !== "string" || !started[0]) {
          wrongShape("start", started, "null or [instanceId, data]");
        }
        return { instanceId: started[0], data: encode(started[1]) };
      } catch (error) {
        throw failureIn(`start on ${about(trigger)}`, error);
      }
    },
    execute(name, data) {
      try {
        return checkCommand(execute(name, decode(data)), "execute");
      } catch (error) {
        throw failureIn(`execute of step \`${name}\``, error);
      }
    },
    compensate(name, data) {
      try {
        return checkCommand(compensate(name, decode(data)), "compensate", true);
      } catch (error) {
        throw failureIn(`compensate of step \`${name}\``, error);
      }
    },
    judge(name, data, answer) {
      if (!isAnswer.has(answer.eventType)) return { tag: "not-mine" };
      try {
        const v = judge(name, decode(data), event(answer));
        if (!verdicts.has(v)) wrongShape("judge", v, "succeeded(data), failed(reason) or NOT_MINE");
        if (v.tag === "succeeded") return { tag: "succeeded", val: encode(v.data) };
        if (v.tag === "failed") return { tag: "failed", val: v.reason };
        return { tag: "not-mine" };
      } catch (error) {
        throw failureIn(`judge of step \`${name}\` on ${about(answer)}`, error);
      }
    },
  };
}
