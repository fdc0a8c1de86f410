// The signed-in session: the token from /login kept in localStorage so that a
// reload keeps the user signed in, until the token's own expiry.

const KEY = 'magdi.session';
// setTimeout cannot wait longer than about 24.8 days; longer waits are re-armed.
const MAX_TIMER_MS = 2 ** 31 - 1;

let expiryTimer = null;

/** Returns the stored session, or null when there is none or it has expired. */
export function loadSession() {
  let session;
  try {
    session = JSON.parse(localStorage.getItem(KEY));
  } catch {
    session = null;
  }
  if (!session || !session.token || !session.user) return null;
  if (msUntilExpiry(session) <= 0) {
    clearSession();
    return null;
  }
  return session;
}

/** Keeps what /login answered: the token, its expiry and the user. */
export function saveSession(login) {
  const session = {
    token: login.token,
    expiresAt: login.expires_at,
    user: { user_id: login.user.user_id, email: login.user.email },
  };
  localStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

export function clearSession() {
  localStorage.removeItem(KEY);
  if (expiryTimer) clearTimeout(expiryTimer);
  expiryTimer = null;
}

function msUntilExpiry(session) {
  const at = Date.parse(session.expiresAt);
  // A session without a readable expiry is still checked by the server on each call.
  if (Number.isNaN(at)) return Infinity;
  return at - Date.now();
}

/** Calls `onExpired` once the token's expiry has passed. */
export function watchExpiry(session, onExpired) {
  if (expiryTimer) clearTimeout(expiryTimer);
  const wait = msUntilExpiry(session);
  if (wait === Infinity) return;
  expiryTimer = setTimeout(() => {
    if (msUntilExpiry(session) <= 0) onExpired();
    else watchExpiry(session, onExpired);
  }, Math.max(0, Math.min(wait, MAX_TIMER_MS)));
}
