// Sign in and sign up. Validation is the server's: its messages are shown
// next to the field they name, or above the button when they name none.

import { ApiError, postJson } from './api.js';
import { $ } from './dom.js';

const SIGNUP_FIELDS = {
  email: 'signup-email',
  password: 'signup-password',
  confirmPassword: 'signup-confirm',
};
const SIGNIN_FIELDS = { email: 'signin-email', password: 'signin-password' };

/** Wires both forms; `onSignedIn(loginAnswer)` runs after a good sign-in. */
export function initAuth(onSignedIn) {
  $('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn(onSignedIn);
  });
  $('signup-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signUp();
  });
}

/** Empties both forms, so a signed-out screen shows nothing of the last user. */
export function resetAuthForms() {
  $('signin-form').reset();
  $('signup-form').reset();
  clearErrors('signin', SIGNIN_FIELDS);
  clearErrors('signup', SIGNUP_FIELDS);
  $('signup-ok').textContent = '';
}

async function signIn(onSignedIn) {
  clearErrors('signin', SIGNIN_FIELDS);
  const form = $('signin-form');
  const body = { email: form.email.value.trim(), password: form.password.value };
  const button = $('signin-submit');
  if (isBusy(button)) return;
  setBusy(button, true);
  try {
    const login = await postJson('/login', body);
    form.password.value = '';
    onSignedIn(login);
  } catch (error) {
    showError('signin', SIGNIN_FIELDS, error);
  } finally {
    setBusy(button, false);
  }
}

async function signUp() {
  clearErrors('signup', SIGNUP_FIELDS);
  $('signup-ok').textContent = '';
  const form = $('signup-form');
  const body = {
    email: form.email.value.trim(),
    password: form.password.value,
    confirmPassword: form.confirmPassword.value,
  };
  const button = $('signup-submit');
  if (isBusy(button)) return;
  setBusy(button, true);
  try {
    const created = await postJson('/register', body);
    form.reset();
    // Hand over to the sign-in form with the new address filled in.
    $('signup-ok').textContent = `Account created for ${created.email}. Sign in with it.`;
    $('signin-email').value = created.email;
    $('signin-password').focus();
  } catch (error) {
    showError('signup', SIGNUP_FIELDS, error);
  } finally {
    setBusy(button, false);
  }
}

// A busy button is marked, not disabled: disabling it would drop the keyboard focus.
function isBusy(button) {
  return button.getAttribute('aria-disabled') === 'true';
}

function setBusy(button, busy) {
  button.setAttribute('aria-disabled', String(busy));
}

function clearErrors(prefix, fields) {
  $(`${prefix}-error`).textContent = '';
  for (const id of Object.values(fields)) {
    $(`${id}-error`).textContent = '';
    $(id).removeAttribute('aria-invalid');
  }
}

function showError(prefix, fields, error) {
  const message = error instanceof ApiError ? error.message : 'Something went wrong. Please try again.';
  const id = error instanceof ApiError ? fields[error.field] : undefined;
  if (!id) {
    $(`${prefix}-error`).textContent = message;
    return;
  }
  $(`${id}-error`).textContent = message;
  const input = $(id);
  input.setAttribute('aria-invalid', 'true');
  input.focus();
}
