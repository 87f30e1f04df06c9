"""The order-summary projector in Python: one row per order, as plugins/order-summary does."""

import factline


def project(event, model):
    order_id = event.stream.removeprefix("order-")
    if event.type == "order.created":
        model.put(order_id, {
            "order_id": order_id, "customer_id": event.payload["customer_id"],
            "status": "created", "item_count": 0, "total": 0,
            "created_at": event.occurred_at, "updated_at": event.occurred_at,
        })
        return
    row = model.get(order_id)
    if row is None:
        # A stream's events arrive in order, so a missing row means a lost order.created.
        raise LookupError(f"no summary for `{order_id}`: order.created was not seen")
    if event.type == "order.item-added":
        row["item_count"] += event.payload["quantity"]
        row["total"] += event.payload["quantity"] * event.payload["unit_price"]
    elif event.type == "order.placed":
        row["status"] = "confirmed"
        row["total"] = event.payload["total"]
    elif event.type == "order.shipped":
        row["status"] = "shipped"
    elif event.type == "order.cancelled":
        row["status"] = "cancelled"
    row["updated_at"] = event.occurred_at
    model.put(order_id, row)


ProjectorHandler = factline.projector(project, event_types=[
    "order.created", "order.item-added", "order.placed", "order.shipped", "order.cancelled",
])
