/**
 * Query-string values as numbers for the routes that leave their checks to
 * the function they call (as the command line does): a blank or padded
 * value is NaN, not what Number() makes of it ('' is 0, ' 5 ' is 5), so that
 * the function's own check refuses it.
 */
export const queryNumber = (s: string | undefined): number | undefined => (s === undefined ? undefined : s !== '' && s.trim() === s ? Number(s) : NaN);
