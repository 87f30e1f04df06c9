// The order-summary projector in JavaScript: one row per order, as plugins/order-summary does.
// The status only climbs RANK (the order and payment topics are read independently, so a payment
// may come before its order); a payment for an order without a row waits under `pending/<id>`.
import { projector, readModelVersion } from "factline-guest/projector";

const RANK = ["created", "confirmed", "paid", "refunded", "shipped", "cancelled"];
const PAYMENT = { "payment.charged": "paid", "payment.refunded": "refunded" };
const climb = (current, status) => (RANK.indexOf(status) > RANK.indexOf(current) ? status : current);

export const projectorHandler = projector({
  eventTypes: ["order.created", "order.item-added", "order.placed", "order.shipped", "order.cancelled",
    ...Object.keys(PAYMENT)],
  project(event, model) {
    const p = event.payload;
    const at = event.occurredAt;
    if (event.type in PAYMENT) {
      const status = PAYMENT[event.type];
      const row = model.get(p.order_id);
      if (row === null) {
        const key = `pending/${p.order_id}`;
        const pending = model.get(key) ?? { status, updated_at: at };
        model.put(key, { status: climb(pending.status, status), updated_at: Math.max(pending.updated_at, at) });
        return;
      }
      row.status = climb(row.status, status);
      row.updated_at = Math.max(row.updated_at, at);
      model.put(p.order_id, row);
      return;
    }
    // (Not a regular expression: QuickJS interprets one at every event.)
    const orderId = event.stream.startsWith("order-") ? event.stream.slice(6) : event.stream;
    if (event.type === "order.created") {
      const row = {
        order_id: orderId, customer_id: p.customer_id, status: "created", item_count: 0, total: 0,
        cancel_reason: null, created_at: at, updated_at: at,
      };
      const pending = model.get(`pending/${orderId}`);
      if (pending !== null) {
        row.status = pending.status;
        row.updated_at = Math.max(at, pending.updated_at);
        model.delete(`pending/${orderId}`);
      }
      model.put(orderId, row);
      return;
    }
    const row = model.get(orderId);
    // A stream's events arrive in order, so a missing row means a lost order.created.
    if (row === null) throw new Error(`no summary for \`${orderId}\`: order.created was not seen`);
    if (event.type === "order.item-added") {
      row.item_count += p.quantity;
      row.total += p.quantity * p.unit_price;
    } else if (event.type === "order.placed") {
      row.status = climb(row.status, "confirmed");
      row.total = p.total;
    } else if (event.type === "order.shipped") {
      row.status = climb(row.status, "shipped");
    } else if (event.type === "order.cancelled") {
      row.status = "cancelled";
      row.cancel_reason = p.reason;
    }
    row.updated_at = Math.max(row.updated_at, at);
    model.put(orderId, row);
  },
});

// Version 1 of the rows' shape, as the Rust build declares; another one rebuilds the read model.
export const readModelEvolution = readModelVersion(1);
