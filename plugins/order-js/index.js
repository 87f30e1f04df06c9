// The order aggregate in JavaScript: the same rules and state as plugins/order (DESIGN §6).
import { Rejection, aggregate, ensure, evolution } from "factline-guest/aggregate";

const notOpen = (order, action) => `cannot ${action}: the order is ${order.status}, not created`;

function decide(order, { type, stream, payload: p }) {
  if (order.status === "new" && type !== "create") {
    throw new Rejection("not-found", `order stream \`${stream}\` does not exist`);
  }
  switch (type) {
    case "create":
      ensure(order.status === "new", "already-exists", "the order already exists");
      return [["order.created", { order_id: stream.replace(/^order-/, ""), customer_id: p.customer_id }]];
    case "add-item": {
      ensure(order.status === "created", "not-open", notOpen(order, "add items"));
      ensure(p.quantity >= 1, "invalid-quantity", "quantity must be at least 1");
      ensure(Number.isSafeInteger(order.total + p.quantity * p.unit_price), "invalid-quantity",
        "the order total would overflow");
      const { product_id, quantity, unit_price } = p;
      return [["order.item-added", { product_id, quantity, unit_price }]];
    }
    case "confirm": {
      ensure(order.status === "created", "not-open", notOpen(order, "confirm it"));
      ensure(order.items.length > 0, "order-empty", "cannot confirm an order without items");
      const { order_id, customer_id, items, total } = order;
      // Schema 2 added `currency` and `discount`.
      return [["order.placed", { order_id, customer_id, items, total, currency: "JPY", discount: 0 }, 2]];
    }
    case "ship":
      ensure(order.status === "confirmed", "not-confirmed",
        `only a confirmed order can be shipped; it is ${order.status}`);
      return [["order.shipped", {}]];
    case "cancel":
      ensure(order.status !== "shipped", "already-shipped", "a shipped order cannot be cancelled");
      ensure(order.status !== "cancelled", "already-cancelled", "the order is already cancelled");
      return [["order.cancelled", { reason: p.reason }]];
    default:
      throw new Error(`unknown command type \`${type}\``);
  }
}

function evolve(order, { type, payload: p }) {
  switch (type) {
    case "order.created":
      return { ...order, status: "created", order_id: p.order_id, customer_id: p.customer_id };
    case "order.item-added":
      return { ...order, items: [...order.items, p], total: order.total + p.quantity * p.unit_price };
    case "order.placed":
      return { ...order, status: "confirmed" };
    case "order.shipped":
      return { ...order, status: "shipped" };
    case "order.cancelled":
      return { ...order, status: "cancelled" };
    default:
      return order;
  }
}

export const aggregateHandler = aggregate({
  initial: { status: "new", order_id: "", customer_id: "", items: [], total: 0 },
  eventTypes: ["order.created", "order.item-added", "order.placed", "order.shipped", "order.cancelled"],
  decide,
  evolve,
});

export const schemaEvolution = evolution({
  upcasts: [["order.placed", 1]],
  // `order.placed` schema 1 predates currencies and discounts: every order was in yen, full price.
  upcast({ payload }) {
    if (typeof payload !== "object" || Array.isArray(payload)) throw new TypeError("order.placed schema 1 is not a map");
    return ["order.placed", { currency: "JPY", discount: 0, ...payload }, 2];
  },
});
