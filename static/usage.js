// Today's usage against the daily allowance, shown in the top bar.

import { get } from './api.js';
import { $, formatNumber, formatTime } from './dom.js';

/** Fetches /usage and shows it; returns the answer for callers that want it. */
export async function refreshUsage(userId) {
  const usage = await get('/usage', { user_id: userId });
  showUsage(usage);
  return usage;
}

function showUsage(usage) {
  const used = usage.tokens_used ?? 0;
  const limit = usage.daily_limit ?? 0;
  const meter = $('usage-meter');
  const text = $('usage-text');
  const box = $('usage');
  box.dataset.used = String(used);
  box.dataset.limit = String(limit);

  // A limit of 0 means the allowance is unlimited: there is nothing to fill.
  if (limit <= 0) {
    meter.hidden = true;
    text.textContent = `${formatNumber(used)} tokens (no daily limit)`;
    box.classList.remove('exhausted');
    box.title = '';
    return;
  }
  meter.hidden = false;
  meter.max = limit;
  meter.value = Math.min(used, limit);
  meter.low = limit * 0.7;
  meter.high = limit * 0.9;
  meter.optimum = 0;
  text.textContent = `${formatNumber(used)} of ${formatNumber(limit)} tokens`;
  const exhausted = (usage.remaining ?? limit - used) <= 0;
  box.classList.toggle('exhausted', exhausted);
  box.title = usage.reset_at ? `The allowance resets ${formatTime(usage.reset_at)}` : '';
}

/** The sentence shown for a 429: when the allowance comes back. */
export function resetSentence(error) {
  const resetAt = error.body?.reset_at;
  if (resetAt) return `${error.message} Your daily allowance resets ${formatTime(resetAt)}.`;
  const seconds = Number(error.body?.retry_after);
  if (seconds > 0) return `${error.message} Try again in ${Math.ceil(seconds / 60)} minutes.`;
  return error.message;
}
