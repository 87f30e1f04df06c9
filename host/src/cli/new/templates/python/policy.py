"""The `{{name}}` policy: every `counter.incremented` of 10 or more sends the `audit` aggregate a
`record` command, one stream per counter. The command id derives from the event, so a
redelivered event sends nothing twice."""

import factline


def react(event):
    by = event.payload["by"]
    if by < 10:
        return []
    return [factline.command("audit", f"audit-{event.stream}", "record",
                             {"counter": event.stream, "by": by}, f"{event.id}/audit")]


PolicyHandler = factline.policy(react, event_types=["counter.incremented"])
