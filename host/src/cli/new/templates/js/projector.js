// The `{{name}}` projector: one row per counter stream, `{ total, increments }`, from the
// `counter.incremented` events of the `counter` topic.
import { projector } from "factline-guest/projector";

export const projectorHandler = projector({
  eventTypes: ["counter.incremented"],
  project(event, model) {
    const row = model.get(event.stream) ?? { total: 0, increments: 0 };
    row.total += event.payload.by;
    row.increments += 1;
    model.put(event.stream, row);
  },
});
