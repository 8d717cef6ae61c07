import { XmlRenderError } from './errors.js';

// XML 1.0 `Char`: what may appear in a document at all, even as a character reference.
const XML_CHARS = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
// What survives xmlbuilder2 + a conforming parser unchanged. xmlbuilder2 drops \r in
// text and attributes, and writes \t and \n in attributes literally, where attribute-value
// normalisation turns them into spaces on the way back in.
const ROUND_TRIP_TEXT = /^[\t\n\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
const ROUND_TRIP_ATTRIBUTE = /^[\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;

export function isXmlRepresentable(value: string): boolean {
  return XML_CHARS.test(value);
}

export function survivesAsText(value: string): boolean {
  return ROUND_TRIP_TEXT.test(value);
}

export function survivesAsAttribute(value: string): boolean {
  return ROUND_TRIP_ATTRIBUTE.test(value);
}

/**
 * Element text, checked and made ready for xmlbuilder2: every value a renderer hands
 * to .txt() goes through here (or attr()).
 */
export function text(field: string, value: string): string {
  if (!survivesAsText(value)) {
    throw new XmlRenderError(field, value, 'contains characters XML cannot carry (control characters, \\r or unpaired surrogates)');
  }
  return forXmlbuilder(value);
}

/** Attribute value, checked and made ready for xmlbuilder2 (see text()). */
export function attr(field: string, value: string): string {
  if (!survivesAsAttribute(value)) {
    throw new XmlRenderError(field, value, 'contains characters an XML attribute cannot carry (control characters, tabs, newlines or unpaired surrogates)');
  }
  return forXmlbuilder(value);
}

/**
 * xmlbuilder2 leaves an `&` alone when what follows looks like an entity or a decimal
 * character reference (`&amp;`, `&lt;`, `&foo;`, `&#65;`), so the text "a&lt;b" would
 * reach libvirt as "a<b" and "&foo;" as an undefined entity. Escaping every `&` first
 * turns each into `&amp;`, which xmlbuilder2 then passes through as it is.
 */
export function forXmlbuilder(value: string): string {
  return value.replaceAll('&', '&amp;');
}

/** libvirt object names (domains, networks, pools, volumes): non-empty, no '/' or newline. */
export function objectName(field: string, value: string): string {
  if (value.length === 0) throw new XmlRenderError(field, value, 'must not be empty');
  if (/[/\n]/.test(value)) throw new XmlRenderError(field, value, "libvirt names cannot contain '/' or a newline");
  return text(field, value);
}

/** A unicast-looking MAC in libvirt's own spelling (lower case), so parsed MACs compare equal. */
export function macAddress(value: string): string {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(value)) throw new XmlRenderError('mac', value, 'is not a MAC address');
  return value.toLowerCase();
}

// Reversible fallback for metadata strings that plain XML cannot hold (see metadata.ts).
// UTF-8 when the string is well-formed UTF-16, code units otherwise, so that even an
// unpaired surrogate that came in through JSON comes back out unchanged.
export type StringEncoding = 'base64' | 'base64-utf16le';

export function encodeString(value: string): { encoding: StringEncoding; data: string } {
  if (isWellFormedUtf16(value)) return { encoding: 'base64', data: Buffer.from(value, 'utf8').toString('base64') };
  return { encoding: 'base64-utf16le', data: Buffer.from(value, 'utf16le').toString('base64') };
}

export function decodeString(data: string, encoding: string | null): string {
  switch (encoding) {
    case null:
    case '':
      return data;
    case 'base64':
      return Buffer.from(data, 'base64').toString('utf8');
    case 'base64-utf16le':
      return Buffer.from(data, 'base64').toString('utf16le');
    default:
      throw new Error(`unknown string encoding ${JSON.stringify(encoding)}`);
  }
}

function isWellFormedUtf16(value: string): boolean {
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(value);
}
