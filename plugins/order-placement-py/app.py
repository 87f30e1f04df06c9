"""The order-placement saga in Python, as plugins/order-placement (DESIGN §6): on
`order.placed`, reserve_inventory -> process_payment -> schedule_shipping -> send_confirmation;
a failure compensates the completed steps newest first (cancel_shipping, refund_payment,
release_inventory)."""

import factline
from factline import NOT_MINE, Failed, Succeeded, command, step

CONFIRMATION_SUBJECT = "Order confirmed"
# How long shipping may take to answer (short: a depot that only queues is noticed quickly).
SHIPPING_TIMEOUT_MS = 1_500
STEP_TIMEOUT_MS = 30_000


def start(trigger):
    p = trigger.payload
    data = {"order_id": p["order_id"], "customer_id": p["customer_id"],
            "items": [{"product_id": i["product_id"], "quantity": i["quantity"]}
                      for i in p["items"]],
            "total": p["total"]}
    return (p["order_id"], data)


def subject(order):
    return f"{CONFIRMATION_SUBJECT}: {order['order_id']}"


def execute(name, order):
    order_id, customer = order["order_id"], order["customer_id"]
    if name == "reserve_inventory":
        return command("inventory", "inventory-main", "reserve",
                       {"order_id": order_id, "items": order["items"]}, f"{order_id}/reserve")
    if name == "process_payment":
        return command("payment", f"payment-{customer}", "charge",
                       {"order_id": order_id, "amount": order["total"]}, f"{order_id}/charge")
    if name == "schedule_shipping":
        return command("shipping", "shipping-main", "schedule", {"order_id": order_id},
                       f"{order_id}/schedule")
    if name == "send_confirmation":
        body = f"Your order {order_id} of {order['total']} is on its way."
        return command("notification", f"notification-{order_id}", "send",
                       {"recipient": customer, "subject": subject(order), "body": body},
                       f"{order_id}/confirm")
    raise ValueError(f"order-placement has no step `{name}`")


def compensate(name, order):
    order_id = order["order_id"]
    if name == "reserve_inventory":  # release_inventory
        return command("inventory", "inventory-main", "release", {"order_id": order_id},
                       f"{order_id}/release")
    if name == "process_payment":  # refund_payment
        return command("payment", f"payment-{order['customer_id']}", "refund",
                       {"order_id": order_id}, f"{order_id}/refund")
    if name == "schedule_shipping":  # cancel_shipping
        return command("shipping", "shipping-main", "cancel", {"order_id": order_id},
                       f"{order_id}/cancel-shipping")
    if name == "send_confirmation":
        return None
    raise ValueError(f"order-placement has no step `{name}`")


ANSWERS = {"reserve_inventory": "inventory.reserved", "process_payment": "payment.charged",
           "schedule_shipping": "shipping.scheduled"}


def judge(name, order, answer):
    p = answer.payload
    if name == "send_confirmation":
        mine = answer.type == "notification.sent" and p["subject"] == subject(order)
        return Succeeded(order) if mine else NOT_MINE
    if answer.type == "notification.sent" or p["order_id"] != order["order_id"]:
        return NOT_MINE
    if name == "reserve_inventory" and answer.type == "inventory.insufficient":
        return Failed(f"insufficient stock of {p['product_id']}")
    return Succeeded(order) if ANSWERS.get(name) == answer.type else NOT_MINE


SagaHandler = factline.saga(
    name="order-placement",
    trigger_types=["order.placed"],
    answer_types=["inventory.reserved", "inventory.insufficient", "payment.charged",
                  "shipping.scheduled", "notification.sent"],
    steps=[step("reserve_inventory", STEP_TIMEOUT_MS, compensable=True),
           step("process_payment", STEP_TIMEOUT_MS, compensable=True),
           step("schedule_shipping", SHIPPING_TIMEOUT_MS, compensable=True),
           step("send_confirmation", STEP_TIMEOUT_MS)],
    start=start, execute=execute, compensate=compensate, judge=judge,
)
