/**
 * Channels, in increasing order of severity. The kernel stores a channel as
 * its index here, so "the strongest channel" is the largest index.
 *
 * - green: release
 * - blue: release now, post-clearance audit
 * - yellow: documentary check
 * - orange: non-intrusive inspection (scan)
 * - red: physical inspection
 */
export const CHANNELS = ['green', 'blue', 'yellow', 'orange', 'red'] as const;
export type Channel = (typeof CHANNELS)[number];

export function channelCode(c: Channel): number {
  return CHANNELS.indexOf(c);
}

export function isChannel(v: unknown): v is Channel {
  return typeof v === 'string' && (CHANNELS as readonly string[]).includes(v);
}
