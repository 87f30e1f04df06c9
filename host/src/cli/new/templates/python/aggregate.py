"""The `{{name}}` aggregate: a counter. `increment` by a positive amount records
`{{topic}}.incremented`; the state is the running total."""

import factline


def decide(state, command):
    by = command.payload["by"]
    factline.ensure(by > 0, "zero", "increment by at least 1")
    return [("{{topic}}.incremented", {"by": by})]


def evolve(state, event):
    return {"value": state["value"] + event.payload["by"]}


AggregateHandler = factline.aggregate(initial={"value": 0}, decide=decide, evolve=evolve,
                                      event_types=["{{topic}}.incremented"])
