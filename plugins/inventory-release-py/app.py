"""The inventory-release policy in Python: a cancelled order releases what the warehouse holds
for it, as plugins/inventory-release does (the inventory answers a release of an order it holds
nothing for with no events, so this is safe for any cancellation)."""

import factline

WAREHOUSE_STREAM = "inventory-main"


def react(event):
    if not event.stream.startswith("order-"):
        raise ValueError(f"{event.stream} is not an order stream")
    order_id = event.stream.removeprefix("order-")
    return [factline.command("inventory", WAREHOUSE_STREAM, "release", {"order_id": order_id},
                             f"{event.id}/release")]


PolicyHandler = factline.policy(react, event_types=["order.cancelled"])
