// Bundles one JavaScript plugin (FACTLINE_ENTRY) with the SDK and @msgpack/msgpack into the
// single ES module (FACTLINE_BUNDLE) that the componentizer embeds. WIT interfaces stay imports.
// The SDK is resolved to this directory, not looked up in node_modules beside the plugin, so a
// plugin anywhere (outside the clone too) builds; the SDK's own imports resolve from here.
import { fileURLToPath } from "node:url";

const sdk = (file) => fileURLToPath(new URL(file, import.meta.url));

export default {
  input: process.env.FACTLINE_ENTRY,
  external: /^(factline|wasi):/,
  platform: "browser",
  resolve: {
    alias: {
      "factline-guest/aggregate": sdk("./aggregate.js"),
      "factline-guest/projector": sdk("./projector.js"),
      "factline-guest/policy": sdk("./policy.js"),
      "factline-guest/saga": sdk("./saga.js"),
    },
  },
  // The source map becomes the line table failures are reported with (line-table.mjs).
  output: { file: process.env.FACTLINE_BUNDLE, format: "esm", sourcemap: true },
};
