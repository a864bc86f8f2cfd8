// EC2 Query API responses: XML in the 2016-11-15 namespace. A response is built as a tree of plain values and
// written with every text escaped; lists are <xSet><item>...</item></xSet> as the API has them.

export const EC2_NAMESPACE = 'http://ec2.amazonaws.com/doc/2016-11-15/';

/** An element's content: text, a nested element map, or a list of items. Undefined members are left out. */
export type XmlValue = string | number | boolean | Date | XmlNode | XmlList | undefined;
export interface XmlNode { readonly [name: string]: XmlValue }
/** A list, written as one <item> per entry. */
export class XmlList {
  constructor(readonly items: readonly XmlValue[]) {}
}
export const list = (items: readonly XmlValue[]): XmlList => new XmlList(items);

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

export function escapeText(s: string): string {
  // Characters XML 1.0 cannot carry at all are replaced; the rest are escaped.
  return s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '\ufffd')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function text(v: string | number | boolean | Date): string {
  if (v instanceof Date) return v.toISOString();
  return escapeText(String(v));
}

function element(name: string, v: XmlValue, out: string[]): void {
  if (v === undefined) return;
  if (!NAME.test(name)) throw new Error(`bad XML element name ${JSON.stringify(name)}`);
  if (v instanceof XmlList) {
    out.push(`<${name}>`);
    for (const item of v.items) element('item', item ?? {}, out);
    out.push(`</${name}>`);
  } else if (typeof v === 'object' && !(v instanceof Date)) {
    out.push(`<${name}>`);
    for (const [k, child] of Object.entries(v)) element(k, child, out);
    out.push(`</${name}>`);
  } else {
    out.push(`<${name}>${text(v)}</${name}>`);
  }
}

/** <ActionResponse xmlns=...><requestId>..</requestId>...</ActionResponse> */
export function responseXml(action: string, requestId: string, body: XmlNode): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>', `<${action}Response xmlns="${EC2_NAMESPACE}">`];
  element('requestId', requestId, out);
  for (const [k, v] of Object.entries(body)) element(k, v, out);
  out.push(`</${action}Response>`);
  return out.join('');
}

export function errorXml(code: string, message: string, requestId: string): string {
  return '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
    + `<Code>${escapeText(code)}</Code><Message>${escapeText(message)}</Message></Error></Errors>`
    + `<RequestID>${escapeText(requestId)}</RequestID></Response>`;
}
