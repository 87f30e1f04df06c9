// The inventory-release policy in JavaScript: a cancelled order releases what the warehouse holds
// for it, as plugins/inventory-release does (the inventory answers a release of an order it holds
// nothing for with no events, so this is safe for any cancellation).
import { command, policy } from "factline-guest/policy";

const WAREHOUSE_STREAM = "inventory-main";

export const policyHandler = policy({
  eventTypes: ["order.cancelled"],
  react(event) {
    if (!event.stream.startsWith("order-")) throw new Error(`${event.stream} is not an order stream`);
    const orderId = event.stream.slice("order-".length);
    return [command("inventory", WAREHOUSE_STREAM, "release", { order_id: orderId }, `${event.id}/release`)];
  },
});
