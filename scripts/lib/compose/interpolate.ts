/**
 * Variable substitution as Docker Compose v2 does it (compose-go's template package), for the
 * compose parity run: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`,
 * `${VAR+alt}`, `${VAR:?error}`, `${VAR?error}` (defaults, alternatives and messages substituted
 * themselves, so they nest), and `$$` for a literal `$`. A substituted value is not scanned again.
 */

export class InterpolationError extends Error {
  override readonly name = 'InterpolationError';
}

export type Lookup = (name: string) => string | undefined;

const NAME = /^[_a-z][_a-z0-9]*/i;

/** Where the `}` closing the `${` at `open` is, counting nested `${ ... }`. */
function closingBrace(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === '$' && text[i + 1] === '{') {
      depth++;
      i++;
    } else if (text[i] === '}') {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/**
 * Substitutes the variables of `text`. `unset` is told of each variable that was used but not set
 * (compose warns and uses an empty string).
 */
export function substitute(text: string, lookup: Lookup, unset: (name: string) => void = () => undefined): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '$') {
      out += c;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i++;
      continue;
    }
    if (next === '{') {
      const end = closingBrace(text, i);
      if (end < 0) throw new InterpolationError(`Invalid template: "${text.slice(i)}"`);
      const inner = text.slice(i + 2, end);
      out += braced(inner, lookup, unset, text.slice(i, end + 1));
      i = end;
      continue;
    }
    const name = NAME.exec(text.slice(i + 1));
    if (name === null) {
      out += '$';
      continue;
    }
    const value = lookup(name[0]);
    if (value === undefined) unset(name[0]);
    out += value ?? '';
    i += name[0].length;
  }
  return out;
}

function braced(inner: string, lookup: Lookup, unset: (name: string) => void, whole: string): string {
  const name = NAME.exec(inner);
  if (name === null) throw new InterpolationError(`Invalid template: "${whole}"`);
  const rest = inner.slice(name[0].length);
  const value = lookup(name[0]);
  if (rest === '') {
    if (value === undefined) unset(name[0]);
    return value ?? '';
  }
  const operator = /^:?[-+?]/.exec(rest);
  if (operator === null) throw new InterpolationError(`Invalid template: "${whole}"`);
  const argument = () => substitute(rest.slice(operator[0].length), lookup, unset);
  const empty = value === undefined || value === '';
  switch (operator[0]) {
    case ':-':
      return empty ? argument() : value;
    case '-':
      return value === undefined ? argument() : value;
    case ':+':
      return empty ? '' : argument();
    case '+':
      return value === undefined ? '' : argument();
    case ':?':
    case '?': {
      if (operator[0] === ':?' ? empty : value === undefined) {
        const message = argument();
        throw new InterpolationError(`required variable ${name[0]} is missing a value${message === '' ? '' : `: ${message}`}`);
      }
      return value!;
    }
    default:
      throw new InterpolationError(`Invalid template: "${whole}"`);
  }
}

/** Substitutes every string value (not the keys) of a parsed YAML tree. `path` names the value in errors. */
export function interpolateTree(tree: unknown, lookup: Lookup, unset?: (name: string) => void, path = ''): unknown {
  if (typeof tree === 'string') {
    try {
      return substitute(tree, lookup, unset);
    } catch (error) {
      if (error instanceof InterpolationError) throw new InterpolationError(`error while interpolating ${path}: ${error.message}`);
      throw error;
    }
  }
  if (Array.isArray(tree)) return tree.map((item, i) => interpolateTree(item, lookup, unset, `${path}[${i}]`));
  if (typeof tree === 'object' && tree !== null) {
    return Object.fromEntries(Object.entries(tree).map(([key, value]) => [key, interpolateTree(value, lookup, unset, path === '' ? key : `${path}.${key}`)]));
  }
  return tree;
}

/**
 * Grafana's interpolation of provisioning files (pkg/services/provisioning/values): `$$` is a
 * literal `$`; `${VAR}` and `$__env{VAR}` are replaced first and the result is scanned again, as
 * Go's os.ExpandEnv then reads it (`$VAR`, `${VAR}`, one-character special names).
 */
export function grafanaInterpolate(text: string, env: Lookup): string {
  return text
    .split('$$')
    .map((part) => expandEnv(part.replace(/\$(|__\w+)\{([^}]+)\}/g, (whole, kind: string, name: string) => (kind === '' || kind === '__env' ? (env(name) ?? '') : whole)), env))
    .join('$');
}

const SPECIAL = new Set(['*', '#', '$', '@', '!', '?', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
const ALPHANUMERIC = /^[A-Za-z0-9_]*/;

/** Go's os.ExpandEnv. */
function expandEnv(text: string, env: Lookup): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '$' || i + 1 >= text.length) {
      out += text[i];
      continue;
    }
    const rest = text.slice(i + 1);
    let name = '';
    let width = 0;
    if (rest[0] === '{') {
      if (rest.length > 2 && SPECIAL.has(rest[1]!) && rest[2] === '}') [name, width] = [rest[1]!, 3];
      else {
        const close = rest.indexOf('}');
        [name, width] = close < 0 ? ['', 1] : close === 1 ? ['', 2] : [rest.slice(1, close), close + 1];
      }
    } else if (SPECIAL.has(rest[0]!)) [name, width] = [rest[0]!, 1];
    else {
      name = ALPHANUMERIC.exec(rest)![0];
      width = name.length;
    }
    if (name === '' && width === 0) out += '$';
    else if (name !== '') out += env(name) ?? '';
    i += width;
  }
  return out;
}
