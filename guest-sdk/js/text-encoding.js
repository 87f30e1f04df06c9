// UTF-8 TextEncoder/TextDecoder for guest runtimes that lack them (QuickJS); @msgpack/msgpack
// creates both when it loads, so common.js imports this module first.
class Utf8Encoder {
  get encoding() {
    return "utf-8";
  }
  encode(text = "") {
    const out = new Uint8Array(text.length * 3);
    return out.subarray(0, this.encodeInto(text, out).written);
  }
  encodeInto(text, out) {
    let read = 0;
    let written = 0;
    for (const ch of text) {
      let c = ch.codePointAt(0);
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // a lone surrogate
      const size = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
      if (written + size > out.length) break;
      if (size === 1) {
        out[written++] = c;
      } else {
        const lead = [0, 0, 0xc0, 0xe0, 0xf0][size];
        out[written++] = lead | (c >> (6 * (size - 1)));
        for (let shift = 6 * (size - 2); shift >= 0; shift -= 6) {
          out[written++] = 0x80 | ((c >> shift) & 0x3f);
        }
      }
      read += ch.length;
    }
    return { read, written };
  }
}

class Utf8Decoder {
  get encoding() {
    return "utf-8";
  }
  decode(bytes = new Uint8Array()) {
    const units = [];
    let text = "";
    for (let i = 0; i < bytes.length; ) {
      const b = bytes[i];
      const size = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
      let c = size === 1 ? b : size === 0 ? 0xfffd : b & (0xff >> (size + 1));
      for (let k = 1; k < size; k++) {
        const next = bytes[i + k];
        if (next === undefined || (next & 0xc0) !== 0x80) {
          c = 0xfffd;
          break;
        }
        c = (c << 6) | (next & 0x3f);
      }
      i += Math.max(size, 1);
      if (c >= 0x10000) {
        c -= 0x10000;
        units.push(0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
      } else {
        units.push(c);
      }
      if (units.length >= 4096) {
        text += String.fromCharCode(...units.splice(0));
      }
    }
    return text + String.fromCharCode(...units);
  }
}

globalThis.TextEncoder ??= Utf8Encoder;
globalThis.TextDecoder ??= Utf8Decoder;
