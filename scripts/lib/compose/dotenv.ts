/**
 * A `.env` file read the way Docker Compose v2 reads it (compose-go's dotenv parser), for the
 * compose parity run and its checks of .env.example:
 * - `KEY=value`, `export KEY=value`, `KEY: value`; `#` starts a comment line; a bare `KEY` takes
 *   its value from the environment.
 * - Unquoted: the value runs to the end of the line; an inline comment starts at ` #` (a space
 *   before the `#`), and trailing blanks are dropped. Blanks after `=` are dropped first, so
 *   `KEY=   # note` gives KEY the value `# note`.
 * - '…' is literal (only \' is an escape); "…" knows \n \t \" \\ \$ and friends. Both may span lines.
 * - Unquoted and double-quoted values are substituted (`$VAR`, `${VAR:-x}`, `$$`), against the
 *   environment first, then the keys above; single-quoted ones are not.
 */
import { substitute, type Lookup } from './interpolate.ts';

export class DotenvError extends Error {
  override readonly name = 'DotenvError';
}

const KEY_CHAR = /[A-Za-z0-9_.\-[\]]/;

const ESCAPES: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '"': '"', '\\': '\\', $: '$$' };

function unescapeDouble(value: string): string {
  return value.replace(/\\(?:([abfnrtv$"\\])|0([0-7]{0,3}))/g, (_whole, simple: string | undefined, octal: string | undefined) =>
    simple !== undefined ? ESCAPES[simple]! : String.fromCharCode(parseInt(octal === '' || octal === undefined ? '0' : octal, 8)),
  );
}

/**
 * Parses a .env file's text. `environment` is looked up first for substitution (compose: the shell
 * wins) and for bare keys.
 */
export function parseDotenv(text: string, environment: Lookup = () => undefined): Map<string, string> {
  const values = new Map<string, string>();
  const lookup: Lookup = (name) => environment(name) ?? values.get(name);
  let src = text.startsWith('\uFEFF') ? text.slice(1) : text;
  let line = 1;
  const fail = (message: string): never => {
    throw new DotenvError(`line ${line}: ${message}`);
  };
  const advance = (count: number) => {
    for (let i = 0; i < count; i++) if (src[i] === '\n') line++;
    src = src.slice(count);
  };

  for (;;) {
    const blank = /^\s*/.exec(src)![0];
    advance(blank.length);
    if (src === '') break;
    if (src[0] === '#') {
      const end = src.indexOf('\n');
      advance(end < 0 ? src.length : end);
      continue;
    }
    const exported = /^export\s+/.exec(src);
    if (exported !== null) advance(exported[0].length);

    let i = 0;
    while (i < src.length && src[i] !== '=' && src[i] !== ':' && src[i] !== '\n') i++;
    const key = src.slice(0, i).trim();
    for (const ch of key) if (!KEY_CHAR.test(ch)) fail(`unexpected character ${JSON.stringify(ch)} in variable name ${JSON.stringify(key)}`);
    if (key === '') fail('a line without a variable name');
    if (i >= src.length || src[i] === '\n') {
      // A bare KEY: inherited from the environment, or left unset.
      advance(i);
      const inherited = environment(key);
      if (inherited !== undefined) values.set(key, inherited);
      continue;
    }
    advance(i + 1);
    const leading = /^[ \t]*/.exec(src)![0];
    advance(leading.length);

    const quote = src[0];
    if (quote === "'" || quote === '"') {
      let end = 1;
      while (end < src.length && !(src[end] === quote && src[end - 1] !== '\\')) end++;
      if (end >= src.length) fail(`unterminated quoted value ${src.slice(0, 40)}…`);
      const raw = src.slice(1, end);
      advance(end + 1);
      values.set(key, quote === "'" ? raw.replace(/\\'/g, "'") : substitute(unescapeDouble(raw), lookup));
      continue;
    }
    const newline = src.indexOf('\n');
    const rawLine = newline < 0 ? src : src.slice(0, newline);
    advance(rawLine.length);
    const comment = rawLine.indexOf(' #');
    const value = (comment < 0 ? rawLine : rawLine.slice(0, comment)).replace(/\s+$/, '');
    values.set(key, substitute(value, lookup));
  }
  return values;
}
