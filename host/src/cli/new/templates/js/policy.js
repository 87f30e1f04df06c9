// The `{{name}}` policy: every `counter.incremented` of 10 or more sends the `audit` aggregate a
// `record` command, one stream per counter. The command id derives from the event, so a
// redelivered event sends nothing twice.
import { command, policy } from "factline-guest/policy";

export const policyHandler = policy({
  eventTypes: ["counter.incremented"],
  react({ id, stream, payload: { by } }) {
    if (by < 10) return [];
    return [command("audit", `audit-${stream}`, "record", { counter: stream, by }, `${id}/audit`)];
  },
});
