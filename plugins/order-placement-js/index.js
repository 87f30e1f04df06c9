// The order-placement saga in JavaScript, as plugins/order-placement (DESIGN §6): on
// `order.placed`, reserve_inventory -> process_payment -> schedule_shipping -> send_confirmation;
// a failure compensates the completed steps newest first (cancel_shipping, refund_payment,
// release_inventory).
import { NOT_MINE, command, failed, saga, step, succeeded } from "factline-guest/saga";

const CONFIRMATION_SUBJECT = "Order confirmed";
// How long shipping may take to answer (short: a depot that only queues is noticed quickly).
const SHIPPING_TIMEOUT_MS = 1_500;
const STEP_TIMEOUT_MS = 30_000;
const ANSWERS = {
  reserve_inventory: "inventory.reserved",
  process_payment: "payment.charged",
  schedule_shipping: "shipping.scheduled",
};

const subject = (order) => `${CONFIRMATION_SUBJECT}: ${order.order_id}`;
const noStep = (name) => new Error(`order-placement has no step \`${name}\``);

function start({ payload: p }) {
  const items = p.items.map(({ product_id, quantity }) => ({ product_id, quantity }));
  return [p.order_id, { order_id: p.order_id, customer_id: p.customer_id, items, total: p.total }];
}

function execute(name, order) {
  const { order_id, customer_id, items, total } = order;
  switch (name) {
    case "reserve_inventory":
      return command("inventory", "inventory-main", "reserve", { order_id, items }, `${order_id}/reserve`);
    case "process_payment":
      return command("payment", `payment-${customer_id}`, "charge", { order_id, amount: total }, `${order_id}/charge`);
    case "schedule_shipping":
      return command("shipping", "shipping-main", "schedule", { order_id }, `${order_id}/schedule`);
    case "send_confirmation": {
      const body = `Your order ${order_id} of ${total} is on its way.`;
      return command("notification", `notification-${order_id}`, "send",
        { recipient: customer_id, subject: subject(order), body }, `${order_id}/confirm`);
    }
    default:
      throw noStep(name);
  }
}

function compensate(name, { order_id, customer_id }) {
  switch (name) {
    case "reserve_inventory": // release_inventory
      return command("inventory", "inventory-main", "release", { order_id }, `${order_id}/release`);
    case "process_payment": // refund_payment
      return command("payment", `payment-${customer_id}`, "refund", { order_id }, `${order_id}/refund`);
    case "schedule_shipping": // cancel_shipping
      return command("shipping", "shipping-main", "cancel", { order_id }, `${order_id}/cancel-shipping`);
    case "send_confirmation":
      return null;
    default:
      throw noStep(name);
  }
}

function judge(name, order, { type, payload: p }) {
  if (name === "send_confirmation") {
    return type === "notification.sent" && p.subject === subject(order) ? succeeded(order) : NOT_MINE;
  }
  if (type === "notification.sent" || p.order_id !== order.order_id) return NOT_MINE;
  if (name === "reserve_inventory" && type === "inventory.insufficient") {
    return failed(`insufficient stock of ${p.product_id}`);
  }
  return ANSWERS[name] === type ? succeeded(order) : NOT_MINE;
}

export const sagaHandler = saga({
  name: "order-placement",
  triggerTypes: ["order.placed"],
  answerTypes: ["inventory.reserved", "inventory.insufficient", "payment.charged", "shipping.scheduled",
    "notification.sent"],
  steps: [
    step("reserve_inventory", STEP_TIMEOUT_MS, { compensable: true }),
    step("process_payment", STEP_TIMEOUT_MS, { compensable: true }),
    step("schedule_shipping", SHIPPING_TIMEOUT_MS, { compensable: true }),
    step("send_confirmation", STEP_TIMEOUT_MS),
  ],
  start,
  execute,
  compensate,
  judge,
});
