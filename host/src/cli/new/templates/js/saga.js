// The `{{name}}` saga: on `transfer.requested`, `withdraw` from one account, then `deposit` into
// the other; a failed deposit compensates the withdrawal (a `deposit` back).
import { NOT_MINE, command, saga, step, succeeded } from "factline-guest/saga";

const TIMEOUT_MS = 30_000;
const ANSWERS = { withdraw: "account.withdrawn", deposit: "account.deposited" };

function accountCommand(t, account, type, suffix) {
  const reference = `${t.transfer_id}/${suffix}`;
  return command("account", `account-${account}`, type, { amount: t.amount, reference }, reference);
}

export const sagaHandler = saga({
  name: "{{name}}",
  triggerTypes: ["transfer.requested"],
  answerTypes: Object.values(ANSWERS),
  steps: [step("withdraw", TIMEOUT_MS, { compensable: true }), step("deposit", TIMEOUT_MS)],
  start({ payload: { transfer_id, from, to, amount } }) {
    return [transfer_id, { transfer_id, from, to, amount }];
  },
  execute(name, t) {
    if (name === "withdraw") return accountCommand(t, t.from, "withdraw", name);
    if (name === "deposit") return accountCommand(t, t.to, "deposit", name);
    throw new Error(`no step \`${name}\``);
  },
  compensate: (name, t) => (name === "withdraw" ? accountCommand(t, t.from, "deposit", "refund") : null),
  judge(name, t, { type, payload }) {
    const done = ANSWERS[name] === type && payload.reference === `${t.transfer_id}/${name}`;
    return done ? succeeded(t) : NOT_MINE;
  },
});
