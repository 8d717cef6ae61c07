import { create } from 'xmlbuilder2';
import { XmlParseError } from './errors.js';

// The few DOM members the parsers use. xmlbuilder2 parses into its own DOM
// implementation; the project compiles without lib.dom, so it is described here.
interface DomNode {
  readonly nodeType: number;
  readonly localName?: string | null;
  readonly namespaceURI?: string | null;
  readonly childNodes: ArrayLike<DomNode>;
  readonly textContent: string | null;
  getAttribute?(name: string): string | null;
}

const ELEMENT_NODE = 1;

/**
 * A read-only view of one element. Lookups go by local name and ignore namespaces,
 * order and anything unknown, because libvirt adds elements and attributes of its own
 * (addresses, aliases, controllers) and reorders what it was given.
 */
export class El {
  constructor(private readonly node: DomNode) {}

  get name(): string {
    return this.node.localName ?? '';
  }

  get namespace(): string | null {
    return this.node.namespaceURI ?? null;
  }

  get text(): string {
    return this.node.textContent ?? '';
  }

  attr(name: string): string | undefined {
    const value = this.node.getAttribute?.(name);
    return value === null || value === undefined ? undefined : value;
  }

  children(name?: string): El[] {
    const out: El[] = [];
    const nodes = this.node.childNodes;
    for (let i = 0; i < nodes.length; i++) {
      const child = nodes[i];
      if (child && child.nodeType === ELEMENT_NODE && (name === undefined || child.localName === name)) {
        out.push(new El(child));
      }
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

/** Parses a document and checks that its root element is the one expected. */
export function parseRoot(xml: string, ...rootNames: [string, ...string[]]): El {
  const expected = rootNames.map((n) => `<${n}>`).join(' or ');
  let root: El;
  try {
    root = new El(create(xml).root().node as unknown as DomNode);
  } catch (e) {
    throw new XmlParseError(`cannot parse ${expected} XML: ${(e as Error).message}`);
  }
  if (!rootNames.includes(root.name)) {
    throw new XmlParseError(`expected a ${expected} document, got <${root.name || '?'}>`);
  }
  return root;
}
