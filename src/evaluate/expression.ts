/**
 * A tiny, safe arithmetic language for the revenue of a declaration in
 * `selectivity evaluate --revenue`, e.g. `customsValue * taxRate / 100` or
 * `"Item Price" * "Tax Rate" / 100`.
 *
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary)*
 *   unary   := '-' unary | primary
 *   primary := number | name | '(' expr ')'
 *   number  := digits ['.' digits] [('e' | 'E') ['+' | '-'] digits]   (or '.' digits …)
 *   name    := [A-Za-z_][A-Za-z0-9_.]*  |  "any text"  |  `any text`
 *
 * Names are resolved against a list of known columns once, at compile time
 * (an unknown name is an error that lists the known ones); nothing else is
 * reachable — no eval, no Function, no property access. The result is a tree
 * of closures (constants folded) evaluated against a row accessor by column
 * index. A missing value (NaN) propagates; division by zero gives NaN.
 */
import { errors } from '../errors.js';

/** The revenue at stake when none is given: evaluate, history import and training all use it. */
export const DEFAULT_REVENUE = 'customsValue * taxRate / 100';
/** Schema numbers a revenue expression may use, beside pass-through columns. */
export const REVENUE_FIELDS = ['customsValue', 'netMass', 'quantity', 'taxRate'] as const;

export const REVENUE_GRAMMAR =
  'an arithmetic expression of numbers, column names (letters, digits, _ and ., or "quoted" / `quoted` for names with spaces), + - * /, unary minus and parentheses';

/** Longest accepted expression, in characters, and deepest nesting of parentheses and unary minus. */
export const MAX_EXPRESSION_LENGTH = 4096;
export const MAX_EXPRESSION_DEPTH = 64;

export interface CompiledExpression {
  /** The source text. */
  readonly text: string;
  /** The names the expression uses, in order of first use (each once). */
  readonly names: readonly string[];
  /** For each of `names`, its index in the list of known names given to compileExpression. */
  readonly indices: readonly number[];
  /**
   * Evaluates for one row; `get(i)` returns the value of known name i (only
   * the `indices` are asked for). NaN when a value is missing or a divisor is 0.
   */
  evaluate(get: (index: number) => number): number;
}

type Node = (get: (index: number) => number) => number;

interface Token {
  kind: 'num' | 'name' | 'op' | 'end';
  /** The operator or parenthesis character, or the name. */
  text: string;
  value: number;
  /** 0-based offset in the source. */
  at: number;
}

function fail(text: string, at: number, what: string): never {
  const position = at + 1;
  throw errors.SEL_ERR_OPTION_INVALID(
    `revenue: ${what} at position ${position} of ${JSON.stringify(text)}; expected ${REVENUE_GRAMMAR}`,
    { field: 'revenue', expected: REVENUE_GRAMMAR, got: text, position },
  );
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isNameStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
const isNamePart = (c: number): boolean => isNameStart(c) || isDigit(c) || c === 46;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13) { i++; continue; }
    const at = i;
    if (isDigit(c) || (c === 46 && i + 1 < n && isDigit(text.charCodeAt(i + 1)))) {
      while (i < n && isDigit(text.charCodeAt(i))) i++;
      if (i < n && text.charCodeAt(i) === 46) { i++; while (i < n && isDigit(text.charCodeAt(i))) i++; }
      if (i < n && (text.charCodeAt(i) | 32) === 101) { // e / E
        let j = i + 1;
        if (j < n && (text.charCodeAt(j) === 43 || text.charCodeAt(j) === 45)) j++;
        if (!(j < n && isDigit(text.charCodeAt(j)))) fail(text, i, 'malformed exponent');
        i = j;
        while (i < n && isDigit(text.charCodeAt(i))) i++;
      }
      if (i < n && isNamePart(text.charCodeAt(i))) fail(text, i, `unexpected ${JSON.stringify(text[i])} after a number`);
      tokens.push({ kind: 'num', text: text.slice(at, i), value: Number(text.slice(at, i)), at });
      continue;
    }
    if (isNameStart(c)) {
      while (i < n && isNamePart(text.charCodeAt(i))) i++;
      tokens.push({ kind: 'name', text: text.slice(at, i), value: 0, at });
      continue;
    }
    if (c === 34 || c === 96) { // " or `
      const close = text.indexOf(text[i], i + 1);
      if (close < 0) fail(text, at, `unterminated quoted name`);
      const name = text.slice(i + 1, close);
      if (name === '') fail(text, at, 'empty quoted name');
      tokens.push({ kind: 'name', text: name, value: 0, at });
      i = close + 1;
      continue;
    }
    if (c === 43 || c === 45 || c === 42 || c === 47 || c === 40 || c === 41) { // + - * / ( )
      tokens.push({ kind: 'op', text: text[i], value: 0, at });
      i++;
      continue;
    }
    fail(text, at, `unexpected character ${JSON.stringify(String.fromCodePoint(text.codePointAt(i) as number))}`);
  }
  tokens.push({ kind: 'end', text: '', value: 0, at: n });
  return tokens;
}

/** A node plus, when it is constant, its value (for folding). */
interface Built { node: Node; constant?: number }

const constant = (v: number): Built => ({ node: () => v, constant: v });

function divide(a: number, b: number): number {
  return b === 0 ? NaN : a / b;
}

function binary(op: string, l: Built, r: Built): Built {
  if (l.constant !== undefined && r.constant !== undefined) {
    const a = l.constant, b = r.constant;
    return constant(op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : divide(a, b));
  }
  const f = l.node, g = r.node;
  switch (op) {
    case '+': return { node: (get) => f(get) + g(get) };
    case '-': return { node: (get) => f(get) - g(get) };
    case '*': return { node: (get) => f(get) * g(get) };
    default: {
      if (r.constant !== undefined) {
        const b = r.constant;
        return b === 0 ? constant(NaN) : { node: (get) => f(get) / b };
      }
      return { node: (get) => { const b = g(get); return b === 0 ? NaN : f(get) / b; } };
    }
  }
}

/**
 * Compiles `text` against the known column names (exact, case-sensitive
 * match; the first of duplicates wins). Throws SEL_ERR_OPTION_INVALID
 * (field 'revenue') on a syntax error, with the 1-based position, or on an
 * unknown name, with the known ones.
 */
export function compileExpression(text: string, known: readonly string[]): CompiledExpression {
  if (typeof text !== 'string') fail(String(text), 0, 'not a string');
  if (text.length > MAX_EXPRESSION_LENGTH) fail(text.slice(0, 80), MAX_EXPRESSION_LENGTH, `longer than ${MAX_EXPRESSION_LENGTH} characters`);
  const lookup = new Map<string, number>();
  known.forEach((name, i) => { if (!lookup.has(name)) lookup.set(name, i); });

  const tokens = tokenize(text);
  const names: string[] = [];
  const indices: number[] = [];
  let pos = 0;
  let depth = 0;

  const peek = (): Token => tokens[pos];
  const describe = (t: Token): string => (t.kind === 'end' ? 'end of expression' : `${JSON.stringify(t.text)}`);

  function expr(): Built {
    let left = term();
    for (let t = peek(); t.kind === 'op' && (t.text === '+' || t.text === '-'); t = peek()) {
      pos++;
      left = binary(t.text, left, term());
    }
    return left;
  }

  function term(): Built {
    let left = unary();
    for (let t = peek(); t.kind === 'op' && (t.text === '*' || t.text === '/'); t = peek()) {
      pos++;
      left = binary(t.text, left, unary());
    }
    return left;
  }

  function nested<T>(t: Token, inner: () => T): T {
    if (++depth > MAX_EXPRESSION_DEPTH) fail(text, t.at, `nesting deeper than ${MAX_EXPRESSION_DEPTH}`);
    const out = inner();
    depth--;
    return out;
  }

  function unary(): Built {
    const t = peek();
    if (t.kind === 'op' && t.text === '-') {
      pos++;
      const operand = nested(t, unary);
      if (operand.constant !== undefined) return constant(-operand.constant);
      const f = operand.node;
      return { node: (get) => -f(get) };
    }
    return primary();
  }

  function primary(): Built {
    const t = peek();
    if (t.kind === 'num') { pos++; return constant(t.value); }
    if (t.kind === 'name') {
      pos++;
      const index = lookup.get(t.text);
      if (index === undefined) {
        const shown = known.length > 40 ? `${known.slice(0, 40).join(', ')}, … (${known.length} in all)` : known.join(', ');
        throw errors.SEL_ERR_OPTION_INVALID(
          `revenue: unknown column ${JSON.stringify(t.text)} at position ${t.at + 1} of ${JSON.stringify(text)}; known columns: ${shown}`,
          { field: 'revenue', expected: `a known column: ${shown}`, got: t.text, position: t.at + 1, known: [...known] },
        );
      }
      if (!indices.includes(index)) { names.push(known[index]); indices.push(index); }
      return { node: (get) => get(index) };
    }
    if (t.kind === 'op' && t.text === '(') {
      pos++;
      const inner = nested(t, expr);
      const close = peek();
      if (!(close.kind === 'op' && close.text === ')')) fail(text, close.at, `expected ")" but found ${describe(close)}`);
      pos++;
      return inner;
    }
    return fail(text, t.at, `expected a number, a column name or "(" but found ${describe(t)}`);
  }

  const built = expr();
  const last = peek();
  if (last.kind !== 'end') fail(text, last.at, `expected an operator or the end but found ${describe(last)}`);
  const node = built.node;
  return Object.freeze({
    text,
    names: Object.freeze(names),
    indices: Object.freeze(indices),
    evaluate: node,
  });
}
