import { errors } from '../errors.js';

/** `label`: what the message calls the setting (default `--<name>`; an environment variable's name where the value came from one). */
export function intOption(raw: string, name: string, min = -Infinity, max = Infinity, label = `--${name}`): number {
  const v = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(v) || v < min || v > max) {
    throw errors.SEL_ERR_OPTION_INVALID(`${label} must be an integer in [${min}, ${max}]`, { field: name, expected: `an integer in [${min}, ${max}]`, got: raw });
  }
  return v;
}

export function numberOption(raw: string, name: string, min = -Infinity, max = Infinity): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || v < min || v > max) {
    throw errors.SEL_ERR_OPTION_INVALID(`--${name} must be a number in [${min}, ${max}]`, { field: name, expected: `a number in [${min}, ${max}]`, got: raw });
  }
  return v;
}
