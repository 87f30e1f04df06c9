"""The order-summary projector in Python: one row per order, as plugins/order-summary does.

The status only climbs RANK (the order and payment topics are read independently, so a payment
may come before its order); a payment for an order without a row waits under `pending/<id>`.
"""

import factline

RANK = ["created", "confirmed", "paid", "refunded", "shipped", "cancelled"]
PAYMENT = {"payment.charged": "paid", "payment.refunded": "refunded"}


def climb(current, status):
    return max(current, status, key=RANK.index)


def project(event, model):
    at = event.occurred_at
    if event.type in PAYMENT:
        order_id, status = event.payload["order_id"], PAYMENT[event.type]
        row = model.get(order_id)
        if row is None:
            key = f"pending/{order_id}"
            pending = model.get(key) or {"status": status, "updated_at": at}
            model.put(key, {"status": climb(pending["status"], status),
                            "updated_at": max(pending["updated_at"], at)})
            return
        row["status"] = climb(row["status"], status)
        row["updated_at"] = max(row["updated_at"], at)
        model.put(order_id, row)
        return
    order_id = event.stream.removeprefix("order-")
    if event.type == "order.created":
        row = {
            "order_id": order_id, "customer_id": event.payload["customer_id"],
            "status": "created", "item_count": 0, "total": 0, "cancel_reason": None,
            "created_at": at, "updated_at": at,
        }
        pending = model.get(f"pending/{order_id}")
        if pending is not None:
            row["status"] = pending["status"]
            row["updated_at"] = max(at, pending["updated_at"])
            model.delete(f"pending/{order_id}")
        model.put(order_id, row)
        return
    row = model.get(order_id)
    if row is None:
        # A stream's events arrive in order, so a missing row means a lost order.created.
        raise LookupError(f"no summary for `{order_id}`: order.created was not seen")
    if event.type == "order.item-added":
        row["item_count"] += event.payload["quantity"]
        row["total"] += event.payload["quantity"] * event.payload["unit_price"]
    elif event.type == "order.placed":
        row["status"] = climb(row["status"], "confirmed")
        row["total"] = event.payload["total"]
    elif event.type == "order.shipped":
        row["status"] = climb(row["status"], "shipped")
    elif event.type == "order.cancelled":
        row["status"] = "cancelled"
        row["cancel_reason"] = event.payload["reason"]
    row["updated_at"] = max(row["updated_at"], at)
    model.put(order_id, row)


ProjectorHandler = factline.projector(project, event_types=[
    "order.created", "order.item-added", "order.placed", "order.shipped", "order.cancelled",
    *PAYMENT,
])

# Version 1 of the rows' shape, as the Rust build declares; another one rebuilds the read model.
ReadModelEvolution = factline.read_model_version(1)
