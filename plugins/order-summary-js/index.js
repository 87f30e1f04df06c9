// The order-summary projector in JavaScript: one row per order, as plugins/order-summary does.
import { projector } from "factline-guest/projector";

export const projectorHandler = projector({
  eventTypes: ["order.created", "order.item-added", "order.placed", "order.shipped", "order.cancelled"],
  project(event, model) {
    const orderId = event.stream.replace(/^order-/, "");
    const p = event.payload;
    if (event.type === "order.created") {
      model.put(orderId, {
        order_id: orderId, customer_id: p.customer_id, status: "created", item_count: 0, total: 0,
        created_at: event.occurredAt, updated_at: event.occurredAt,
      });
      return;
    }
    const row = model.get(orderId);
    // A stream's events arrive in order, so a missing row means a lost order.created.
    if (row === null) throw new Error(`no summary for \`${orderId}\`: order.created was not seen`);
    if (event.type === "order.item-added") {
      row.item_count += p.quantity;
      row.total += p.quantity * p.unit_price;
    } else if (event.type === "order.placed") {
      row.status = "confirmed";
      row.total = p.total;
    } else if (event.type === "order.shipped") {
      row.status = "shipped";
    } else if (event.type === "order.cancelled") {
      row.status = "cancelled";
    }
    row.updated_at = event.occurredAt;
    model.put(orderId, row);
  },
});
