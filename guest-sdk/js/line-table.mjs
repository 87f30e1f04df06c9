// Appends to a bundle the table that maps its lines back to the plugin's files, so a failure's
// stack (QuickJS reports `/bundle.js:LINE:COL`) names the file and line the author wrote:
//
//   node line-table.mjs BUNDLE.js BUNDLE.js.map PLUGIN_DIR
//
// The table is `globalThis.__factlineLines = { sources, own, lines }`: `lines[i]` is
// `[source, line]` (1-based) of the bundle's line i + 1, from its first source-map segment.
// Appended at the end, so no earlier line moves.
import { appendFileSync, readFileSync } from "node:fs";
import { basename, dirname, relative, resolve } from "node:path";

const [bundle, mapFile, pluginDir] = process.argv.slice(2);
const map = JSON.parse(readFileSync(mapFile, "utf8"));
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** The numbers of one base64 VLQ segment. */
function decode(segment) {
  const out = [];
  let value = 0;
  let shift = 0;
  for (const ch of segment) {
    const digit = alphabet.indexOf(ch);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      out.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return out;
}

const root = resolve(dirname(mapFile), map.sourceRoot ?? "");
const paths = map.sources.map((s) => resolve(root, s));
const plugin = resolve(pluginDir);
const own = paths.map((p) => !relative(plugin, p).startsWith(".."));
const sources = paths.map((p, i) => (own[i] ? relative(plugin, p) : basename(p)));
let source = 0;
let line = 0;
const lines = map.mappings.split(";").map((generated) => {
  let first = null;
  for (const segment of generated.split(",")) {
    if (!segment) continue;
    const [, dSource, dLine] = decode(segment);
    if (dSource === undefined) continue;
    source += dSource;
    line += dLine;
    // Every segment moves the running source and line; the line's first one names it.
    first ??= [source, line + 1];
  }
  return first;
});
appendFileSync(
  bundle,
  `\nglobalThis.__factlineLines = ${JSON.stringify({ sources, own, lines })};\n`,
);
