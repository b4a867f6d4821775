/**
 * A minimal well-formedness check for the SVG files the benchmarks write: one XML declaration,
 * tags with double-quoted attributes, balanced open/close tags under one root, text without a raw
 * `<` and with only the five predefined entities or numeric character references.
 */

export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  /** Text directly inside the element (entities decoded). */
  text: string;
  depth: number;
}

const ENTITY = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g;
const TAG = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*="[^"<]*")*)\s*(\/?)>/y;
const ATTRIBUTE = /([A-Za-z_][\w:.-]*)="([^"]*)"/g;

function checkText(text: string, where: number): string {
  if (text.includes('<')) throw new Error(`raw '<' in text at offset ${where}`);
  if (text.replace(ENTITY, '').includes('&')) throw new Error(`bad entity in text at offset ${where}: ${JSON.stringify(text.slice(0, 40))}`);
  return text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

/** Every element in document order; throws on the first well-formedness problem. */
export function parseXml(xml: string): XmlElement[] {
  let pos = 0;
  const declaration = /^<\?xml [^?]*\?>\s*/.exec(xml);
  if (declaration) pos = declaration[0].length;
  const elements: XmlElement[] = [];
  const stack: XmlElement[] = [];
  let roots = 0;
  while (pos < xml.length) {
    const next = xml.indexOf('<', pos);
    const text = xml.slice(pos, next < 0 ? xml.length : next);
    const decoded = checkText(text, pos);
    if (stack.length > 0) stack[stack.length - 1].text += decoded;
    else if (text.trim() !== '') throw new Error(`text outside the root element at offset ${pos}`);
    if (next < 0) break;
    if (xml.startsWith('<!--', next)) {
      const end = xml.indexOf('-->', next);
      if (end < 0) throw new Error('unterminated comment');
      pos = end + 3;
      continue;
    }
    TAG.lastIndex = next;
    const match = TAG.exec(xml);
    if (match === null) throw new Error(`malformed tag at offset ${next}: ${JSON.stringify(xml.slice(next, next + 60))}`);
    const [whole, closing, name, attributeText, selfClosing] = match;
    pos = next + whole.length;
    if (closing) {
      if (attributeText.trim() !== '' || selfClosing) throw new Error(`malformed closing tag </${name}> at offset ${next}`);
      const open = stack.pop();
      if (open === undefined || open.name !== name) throw new Error(`</${name}> at offset ${next} closes <${open?.name ?? 'nothing'}>`);
      continue;
    }
    if (stack.length === 0 && ++roots > 1) throw new Error(`second root element <${name}> at offset ${next}`);
    const attributes: Record<string, string> = {};
    for (const [, key, value] of attributeText.matchAll(ATTRIBUTE)) {
      if (key in attributes) throw new Error(`duplicate attribute ${key} on <${name}>`);
      attributes[key] = checkText(value, next);
    }
    const element: XmlElement = { name, attributes, text: '', depth: stack.length };
    elements.push(element);
    if (!selfClosing) stack.push(element);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack[stack.length - 1].name}>`);
  if (roots !== 1) throw new Error('no root element');
  return elements;
}
