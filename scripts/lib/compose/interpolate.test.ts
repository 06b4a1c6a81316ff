import { describe, expect, it } from 'vitest';
import { parseDotenv } from './dotenv.ts';
import { grafanaInterpolate, interpolateTree, substitute } from './interpolate.ts';

const env = (values: Record<string, string>) => (name: string) => values[name];

describe('compose interpolation', () => {
  const lookup = env({ S: 'set', E: '', P: 'a$x${y}$$z' });

  it('substitutes every form compose knows', () => {
    expect(substitute('$$S', lookup)).toBe('$S');
    expect(substitute('$$$S', lookup)).toBe('$set');
    expect(substitute('${U:-d}/${E:-d}', lookup)).toBe('d/d');
    expect(substitute('${U-d}/${E-d}', lookup)).toBe('d/');
    expect(substitute('${S:+alt}/${E:+alt}', lookup)).toBe('alt/');
    expect(substitute('${E+alt}/${U+alt}', lookup)).toBe('alt/');
    expect(substitute('${U:-${U2:-deep}}x', lookup)).toBe('deepx');
    expect(substitute('${U:-a:-b}', lookup)).toBe('a:-b');
    expect(substitute('${E?}', lookup)).toBe('');
    expect(substitute('cost $1 and $ x', lookup)).toBe('cost $1 and $ x');
  });

  it('does not scan a substituted value again', () => {
    expect(substitute('${P}', lookup)).toBe('a$x${y}$$z');
    expect(substitute('$P', lookup)).toBe('a$x${y}$$z');
  });

  it('fails on a required variable that is unset or empty, with the message', () => {
    expect(() => substitute('${U:?please set}', lookup)).toThrow('required variable U is missing a value: please set');
    expect(() => substitute('${E:?}', lookup)).toThrow('required variable E is missing a value');
    expect(() => substitute('${U?}', lookup)).toThrow('required variable U is missing a value');
    expect(() => substitute('${}', lookup)).toThrow('Invalid template');
  });

  it('names the value in errors and leaves keys alone', () => {
    expect(interpolateTree({ a: { $S: '${S}', list: ['$S'] } }, lookup)).toEqual({ a: { $S: 'set', list: ['set'] } });
    expect(() => interpolateTree({ services: { web: { environment: { FOO: '${U:?x}' } } } }, lookup)).toThrow(
      'error while interpolating services.web.environment.FOO: required variable U is missing a value: x',
    );
  });
});

describe('compose .env files', () => {
  it('takes the comment after an empty value as the value (the trailing-comment trap)', () => {
    const values = parseDotenv('A=      # required\nB=value   # note\nC=123#not-a-comment\nD=a\t#tab\n');
    expect(values.get('A')).toBe('# required');
    expect(values.get('B')).toBe('value');
    expect(values.get('C')).toBe('123#not-a-comment');
    expect(values.get('D')).toBe('a\t#tab');
  });

  it('reads quotes, escapes, exports and yaml-style lines', () => {
    const values = parseDotenv(
      ['export A=1', 'B: two', "C='it\\'s $A # literal'", 'D="line\\nnext \\"q\\" \\$A $A"', 'E="multi', 'line"', 'F=it\'s a b  ', '# comment', 'G = spaced'].join('\n'),
    );
    expect(Object.fromEntries(values)).toEqual({ A: '1', B: 'two', C: "it's $A # literal", D: 'line\nnext "q" $A 1', E: 'multi\nline', F: "it's a b", G: 'spaced' });
  });

  it('substitutes against the environment first, then the keys above, and $$ is a dollar', () => {
    const values = parseDotenv('SHELL_VAR=fromfile\nK=$SHELL_VAR\nL=${LATER}\nLATER=1\nM=pa$$word\nN=pa$word', env({ SHELL_VAR: 'fromshell' }));
    expect(values.get('K')).toBe('fromshell');
    expect(values.get('L')).toBe('');
    expect(values.get('M')).toBe('pa$word');
    expect(values.get('N')).toBe('pa');
  });

  it('refuses what compose refuses', () => {
    expect(() => parseDotenv('A B=1')).toThrow('line 1: unexpected character " " in variable name "A B"');
    expect(() => parseDotenv('A=1\nB="open')).toThrow('line 2: unterminated quoted value');
  });
});

describe('Grafana provisioning interpolation', () => {
  const lookup = env({ P: 'a$X-b', X: 'EX', D: 'a$$b', U: 'user' });

  it('expands $VAR once, but scans what ${VAR} gave again', () => {
    expect(grafanaInterpolate('$P', lookup)).toBe('a$X-b');
    expect(grafanaInterpolate('${P}', lookup)).toBe('aEX-b');
    expect(grafanaInterpolate('${D}', lookup)).toBe('ab');
    expect(grafanaInterpolate('$__env{U}', lookup)).toBe('user');
  });

  it('keeps $$ as a literal dollar and a lone $ as it is', () => {
    expect(grafanaInterpolate('pa$$word', lookup)).toBe('pa$word');
    expect(grafanaInterpolate('cost $ 5', lookup)).toBe('cost $ 5');
  });
});
