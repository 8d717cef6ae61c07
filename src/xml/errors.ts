/**
 * Thrown when a spec holds a value XML (or libvirt's schema) cannot carry faithfully.
 * Renderers refuse instead of letting xmlbuilder2 drop the offending characters
 * silently, which would hand libvirt a document that differs from what was asked for.
 */
export class XmlRenderError extends Error {
  constructor(
    readonly field: string,
    readonly value: string,
    reason: string,
  ) {
    super(`${field} ${JSON.stringify(value)}: ${reason}`);
    this.name = 'XmlRenderError';
  }
}

/** Thrown when a document handed to a parser lacks what the parser needs. */
export class XmlParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XmlParseError';
  }
}
