// The `{{name}}` aggregate: a counter. `increment` by a positive amount records
// `{{topic}}.incremented`; the state is the running total.
import { aggregate, ensure } from "factline-guest/aggregate";

export const aggregateHandler = aggregate({
  initial: { value: 0 },
  eventTypes: ["{{topic}}.incremented"],
  decide(state, { payload: { by } }) {
    ensure(by > 0, "zero", "increment by at least 1");
    return [["{{topic}}.incremented", { by }]];
  },
  evolve: (state, event) => ({ value: state.value + event.payload.by }),
});
