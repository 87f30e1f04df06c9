"""The `{{name}}` projector: one row per counter stream, `{total, increments}`, from the
`counter.incremented` events of the `counter` topic."""

import factline


def project(event, model):
    row = model.get(event.stream) or {"total": 0, "increments": 0}
    row["total"] += event.payload["by"]
    row["increments"] += 1
    model.put(event.stream, row)


ProjectorHandler = factline.projector(project, event_types=["counter.incremented"])
