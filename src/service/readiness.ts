/**
 * Readiness on the store's account (`GET /readyz`): a service whose store
 * cannot take its decisions says so, so that a load balancer sends the
 * traffic elsewhere, rather than saying ready and failing every scoring
 * request at its decision-log commit.
 *
 *  - At start, the store is checked in the background (src/store/check.ts,
 *    serve --store-check), while the service warms up; the port opens when
 *    the check ends or after STORE_CHECK_WAIT_MS, whichever comes first.
 *    Not ready until the check passes; for good when it finds the store
 *    damaged (a restart on a sound store clears it), or when it could not
 *    run (the store busy past the timeout, the check's process failed).
 *  - While running, a decision-log commit that fails (a full disk, a store
 *    damaged since) makes the service not ready until a commit succeeds, or
 *    for STORE_FAULT_HOLD_MS after the last failure, whichever comes first.
 *    Then it says ready again, so that traffic comes back and tries the
 *    store: nothing else writes to it while no traffic comes (a circuit
 *    breaker's half-open state). A writer thread that is gone is for good.
 */
import type { DecisionLog } from '../feedback/decision-log.js';
import type { StoreCheckResult } from '../store/check.js';

/** How long the service waits for the store's check before it opens its port anyway (and says not ready until the check ends), ms. */
export const STORE_CHECK_WAIT_MS = 2_000;

/** How long a failed decision-log commit keeps the service not ready, unless a commit succeeds first, ms. */
export const STORE_FAULT_HOLD_MS = 10_000;

/** Where the store's check at start stands. */
export type StoreCheckState =
  | { state: 'off' }
  | { state: 'checking'; since: number }
  | ({ state: 'done' } & StoreCheckResult);

/** Why the service is not ready: the details of its SEL_ERR_NOT_READY. */
export interface NotReady {
  message: string;
  field: string;
  expected: string;
  got: unknown;
}

/** Why the store keeps the service from being ready now, or undefined (`now`: ms since the epoch). */
export function storeNotReady(check: StoreCheckState, log: DecisionLog | undefined, now = Date.now()): NotReady | undefined {
  if (check.state === 'checking') {
    return { message: 'the store is being checked (quick_check) before the service takes traffic', field: 'store', expected: 'a store whose check has passed', got: `checking, for ${((now - check.since) / 1000).toFixed(1)} s` };
  }
  if (check.state === 'done' && !check.ran) {
    return { message: 'the store could not be checked at start: restart the service once the cause is gone (or start it with --store-check off)', field: 'store', expected: 'a store whose check has run and passed', got: check.problems };
  }
  if (check.state === 'done' && !check.ok) {
    return { message: 'the store is damaged: restore it from a backup (docs/service.md, "Backup, restore and upgrades") and restart', field: 'store', expected: 'a store that passes PRAGMA quick_check', got: check.problems };
  }
  const fault = log?.fault;
  if (fault && (fault.permanent || now - fault.at < STORE_FAULT_HOLD_MS)) {
    const message = fault.permanent
      ? 'the decision log\'s writer is gone: decisions cannot be logged until a restart'
      : `the last decision-log commit failed ${((now - fault.at) / 1000).toFixed(1)} s ago: decisions cannot be logged (a full disk, a damaged store?)`;
    return { message, field: 'decisionLog', expected: 'decision-log commits that succeed', got: fault.error.message };
  }
  return undefined;
}
