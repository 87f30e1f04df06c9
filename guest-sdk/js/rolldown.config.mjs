// Bundles one JavaScript plugin (FACTLINE_ENTRY) with the SDK and @msgpack/msgpack into the
// single ES module (FACTLINE_BUNDLE) that the componentizer embeds. WIT interfaces stay imports.
export default {
  input: process.env.FACTLINE_ENTRY,
  external: /^(factline|wasi):/,
  platform: "browser",
  output: { file: process.env.FACTLINE_BUNDLE, format: "esm" },
};
