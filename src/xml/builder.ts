import { create } from 'xmlbuilder2';

export type Builder = ReturnType<typeof create>;

/** A fresh document; renderers add exactly one root element to it. */
export function document(): Builder {
  return create({ version: '1.0' });
}

/** Serialises without the XML declaration: libvirt does not need it, and device/metadata
 * snippets are embedded into other documents. */
export function serialize(doc: Builder): string {
  return doc.end({ prettyPrint: true, headless: true, indent: '  ' }) + '\n';
}
