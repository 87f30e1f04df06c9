"""The order aggregate in Python: the same rules and state as plugins/order (DESIGN §6)."""

import factline
from factline import Rejection, ensure

INITIAL = {"status": "new", "order_id": "", "customer_id": "", "items": [], "total": 0}
MAX_TOTAL = 2**64 - 1


def decide(order, command):
    status, kind, p = order["status"], command.type, command.payload
    if status == "new" and kind != "create":
        raise Rejection("not-found", f"order stream `{command.stream}` does not exist")
    if kind == "create":
        ensure(status == "new", "already-exists", "the order already exists")
        order_id = command.stream.removeprefix("order-")
        return [("order.created", {"order_id": order_id, "customer_id": p["customer_id"]})]
    if kind == "add-item":
        ensure(status == "created", "not-open", not_open(order, "add items"))
        ensure(p["quantity"] >= 1, "invalid-quantity", "quantity must be at least 1")
        ensure(order["total"] + p["quantity"] * p["unit_price"] <= MAX_TOTAL,
               "invalid-quantity", "the order total would overflow")
        item = {k: p[k] for k in ("product_id", "quantity", "unit_price")}
        return [("order.item-added", item)]
    if kind == "confirm":
        ensure(status == "created", "not-open", not_open(order, "confirm it"))
        ensure(order["items"], "order-empty", "cannot confirm an order without items")
        placed = {"order_id": order["order_id"], "customer_id": order["customer_id"],
                  "items": order["items"], "total": order["total"], "currency": "JPY",
                  "discount": 0}
        # Schema 2 added `currency` and `discount`.
        return [("order.placed", placed, 2)]
    if kind == "ship":
        ensure(status == "confirmed", "not-confirmed",
               f"only a confirmed order can be shipped; it is {status}")
        return [("order.shipped", {})]
    if kind == "cancel":
        ensure(status != "shipped", "already-shipped", "a shipped order cannot be cancelled")
        ensure(status != "cancelled", "already-cancelled", "the order is already cancelled")
        return [("order.cancelled", {"reason": p["reason"]})]
    raise ValueError(f"unknown command type `{kind}`")


def not_open(order, action):
    return f"cannot {action}: the order is {order['status']}, not created"


def evolve(order, event):
    order = dict(order)
    p = event.payload
    if event.type == "order.created":
        order.update(status="created", order_id=p["order_id"], customer_id=p["customer_id"])
    elif event.type == "order.item-added":
        order["items"] = order["items"] + [p]
        order["total"] = min(order["total"] + p["quantity"] * p["unit_price"], MAX_TOTAL)
    elif event.type == "order.placed":
        order["status"] = "confirmed"
    elif event.type == "order.shipped":
        order["status"] = "shipped"
    elif event.type == "order.cancelled":
        order["status"] = "cancelled"
    return order


AggregateHandler = factline.aggregate(
    initial=INITIAL, decide=decide, evolve=evolve,
    event_types=["order.created", "order.item-added", "order.placed", "order.shipped",
                 "order.cancelled"],
)


def upcast(event):
    # `order.placed` schema 1 predates currencies and discounts: every order was in yen, full
    # price.
    if not isinstance(event.payload, dict):
        raise TypeError("order.placed schema 1 is not a map")
    return ("order.placed", {"currency": "JPY", "discount": 0, **event.payload}, 2)


SchemaEvolution = factline.evolution(upcasts=[("order.placed", 1)], upcast=upcast)
