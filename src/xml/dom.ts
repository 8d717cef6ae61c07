import { XmlParseError } from './errors.js';

/**
 * A read-only view of one element. Lookups go by local name and ignore namespaces,
 * order and anything unknown, because libvirt adds elements and attributes of its own
 * (addresses, aliases, controllers) and reorders what it was given.
 */
export class El {
  constructor(private readonly node: ElementNode) {}

  get name(): string {
    return this.node.localName;
  }

  get namespace(): string | null {
    return this.node.namespace;
  }

  /** All descendant text, like DOM textContent. */
  get text(): string {
    return textContent(this.node);
  }

  attr(name: string): string | undefined {
    return this.node.attributes.get(name);
  }

  children(name?: string): El[] {
    const out: El[] = [];
    for (const child of this.node.children) {
      if (typeof child !== 'string' && (name === undefined || child.localName === name)) out.push(new El(child));
    }
    return out;
  }

  child(name: string): El | undefined {
    return this.children(name)[0];
  }

  /** Follows a path of child names; undefined as soon as one is missing. */
  at(...path: string[]): El | undefined {
    let current: El | undefined = this;
    for (const step of path) {
      current = current?.child(step);
      if (!current) return undefined;
    }
    return current;
  }

  textOf(...path: string[]): string | undefined {
    return this.at(...path)?.text;
  }

  required(...path: string[]): El {
    const found = this.at(...path);
    if (!found) throw new XmlParseError(`<${this.name}> has no <${path.join('/')}>`);
    return found;
  }

  requiredAttr(name: string): string {
    const value = this.attr(name);
    if (value === undefined) throw new XmlParseError(`<${this.name}> has no ${name} attribute`);
    return value;
  }
}

/** Parses a document and checks that its root element is one of those expected. */
export function parseRoot(xml: string, ...rootNames: [string, ...string[]]): El {
  const root = new El(parseXml(xml));
  if (!rootNames.includes(root.name)) {
    const expected = rootNames.map((n) => `<${n}>`).join(' or ');
    throw new XmlParseError(`expected a ${expected} document, got <${root.name}>`);
  }
  return root;
}

// A small, strict XML parser for what libvirt emits: elements, attributes, text, CDATA,
// comments, processing instructions. It exists because xmlbuilder2's reader decodes
// entities in two passes ("&amp;#65;" comes back as "A", not "&#65;") and accepts
// mismatched end tags, and exact round trips are this module's contract.
// Document type declarations are refused: libvirt never writes one, and entity
// definitions are exactly what a parser of untrusted input should not expand.

interface ElementNode {
  localName: string;
  namespace: string | null;
  attributes: Map<string, string>;
  children: Array<ElementNode | string>;
}

const NAME = /[A-Za-z_:\u00C0-\uFFFF][\w.:\-\u00B7\u00C0-\uFFFF]*/y;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };

export function parseXml(input: string): ElementNode {
  // XML 1.0 §2.11: every line break is read as \n before anything else happens.
  const src = input.replace(/\r\n?/g, '\n');
  let pos = 0;
  const fail = (what: string): never => {
    const line = src.slice(0, pos).split('\n').length;
    throw new XmlParseError(`malformed XML at line ${line}: ${what}`);
  };
  const skipMisc = (): void => {
    for (;;) {
      while (pos < src.length && /\s/.test(src[pos]!)) pos++;
      if (src.startsWith('<?', pos)) {
        const end = src.indexOf('?>', pos);
        if (end < 0) fail('unterminated processing instruction');
        pos = end + 2;
      } else if (src.startsWith('<!--', pos)) {
        const end = src.indexOf('-->', pos + 4);
        if (end < 0) fail('unterminated comment');
        pos = end + 3;
      } else if (src.startsWith('<!DOCTYPE', pos)) {
        fail('document type declarations are not accepted');
      } else {
        return;
      }
    }
  };
  const name = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(src);
    if (!m) fail('expected a name');
    pos += m![0].length;
    return m![0];
  };
  const decode = (raw: string): string =>
    raw.replace(/&([^;&\s]*);?/g, (whole, ref: string) => {
      if (!whole.endsWith(';')) fail(`bare "&" in ${JSON.stringify(raw.slice(0, 40))}`);
      if (ref in PREDEFINED) return PREDEFINED[ref]!;
      const num = /^#x([0-9A-Fa-f]+)$/.exec(ref) ?? /^#([0-9]+)$/.exec(ref);
      if (num) {
        const code = parseInt(num[1]!, ref.startsWith('#x') ? 16 : 10);
        if (code > 0x10ffff || code === 0) fail(`character reference &${ref};`);
        return String.fromCodePoint(code);
      }
      return fail(`undefined entity &${ref};`);
    });

  const parseElement = (scope: Map<string, string>): ElementNode => {
    pos++; // '<'
    const qname = name();
    const rawAttrs: Array<[string, string]> = [];
    for (;;) {
      const before = pos;
      while (pos < src.length && /\s/.test(src[pos]!)) pos++;
      if (src.startsWith('/>', pos) || src[pos] === '>') break;
      if (pos === before) fail(`expected whitespace before an attribute of <${qname}>`);
      const attrName = name();
      while (/\s/.test(src[pos] ?? '')) pos++;
      if (src[pos] !== '=') fail(`expected "=" after ${attrName}`);
      pos++;
      while (/\s/.test(src[pos] ?? '')) pos++;
      const quote = src[pos];
      if (quote !== '"' && quote !== "'") fail(`unquoted value of ${attrName}`);
      const end = src.indexOf(quote!, pos + 1);
      if (end < 0) fail(`unterminated value of ${attrName}`);
      const raw = src.slice(pos + 1, end);
      if (raw.includes('<')) fail(`"<" in the value of ${attrName}`);
      // §3.3.3: literal whitespace in attribute values reads as spaces; references do not.
      rawAttrs.push([attrName, decode(raw.replace(/[\t\n]/g, ' '))]);
      pos = end + 1;
    }
    const local = new Map(scope);
    const attributes = new Map<string, string>();
    for (const [n, v] of rawAttrs) {
      if (n === 'xmlns') local.set('', v);
      else if (n.startsWith('xmlns:')) local.set(n.slice(6), v);
      if (attributes.has(n)) fail(`attribute ${n} repeated on <${qname}>`);
      attributes.set(n, v);
    }
    const colon = qname.indexOf(':');
    const prefix = colon < 0 ? '' : qname.slice(0, colon);
    const node: ElementNode = {
      localName: colon < 0 ? qname : qname.slice(colon + 1),
      namespace: local.get(prefix) || null,
      attributes,
      children: [],
    };
    if (src.startsWith('/>', pos)) {
      pos += 2;
      return node;
    }
    pos++; // '>'
    for (;;) {
      const next = src.indexOf('<', pos);
      if (next < 0) fail(`<${qname}> is never closed`);
      if (next > pos) {
        const raw = src.slice(pos, next);
        if (raw.includes(']]>')) fail('"]]>" in text');
        node.children.push(decode(raw));
      }
      pos = next;
      if (src.startsWith('</', pos)) {
        pos += 2;
        const closing = name();
        if (closing !== qname) fail(`</${closing}> closes <${qname}>`);
        while (/\s/.test(src[pos] ?? '')) pos++;
        if (src[pos] !== '>') fail(`expected ">" after </${closing}`);
        pos++;
        return node;
      } else if (src.startsWith('<![CDATA[', pos)) {
        const end = src.indexOf(']]>', pos);
        if (end < 0) fail('unterminated CDATA section');
        node.children.push(src.slice(pos + 9, end));
        pos = end + 3;
      } else if (src.startsWith('<!--', pos)) {
        const end = src.indexOf('-->', pos + 4);
        if (end < 0) fail('unterminated comment');
        pos = end + 3;
      } else if (src.startsWith('<?', pos)) {
        const end = src.indexOf('?>', pos);
        if (end < 0) fail('unterminated processing instruction');
        pos = end + 2;
      } else if (src.startsWith('<!', pos)) {
        fail('unexpected declaration');
      } else {
        node.children.push(parseElement(local));
      }
    }
  };

  skipMisc();
  if (src[pos] !== '<') fail('no root element');
  const root = parseElement(new Map([['xml', 'http://www.w3.org/XML/1998/namespace']]));
  skipMisc();
  if (pos < src.length) fail('content after the root element');
  return root;
}

function textContent(node: ElementNode): string {
  let out = '';
  for (const child of node.children) out += typeof child === 'string' ? child : textContent(child);
  return out;
}
