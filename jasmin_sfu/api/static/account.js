// jasmin-sfu demo page: the account panel. Sign up, log in, log out, the
// wallet and credit purchases, through the REST API (docs/accounts.md).
// The session token lands in `jasmin.token` (app.js joins shows with it), and
// every change is announced as a `jasmin:token` event on window so the chat
// and search panels can follow.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const account = window.jasminAccount = {
    principal: null,
    wallet: null,
    lastPurchase: null,
    lastError: null,
  };

  async function api(method, path, body, token = window.jasmin.token) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = res.status === 204 ? null : await res.json();
    if (!res.ok) {
      const err = new Error(data && data.error ? `${data.error.code}: ${data.error.message}` : `HTTP ${res.status}`);
      err.code = data && data.error ? data.error.code : `http_${res.status}`;
      throw err;
    }
    return data;
  }
  account.api = api;

  function say(text, isError = false) {
    const el = $('account-status');
    el.textContent = text;
    el.dataset.error = isError ? 'true' : 'false';
  }

  function fail(err) {
    account.lastError = err.code || 'error';
    say(err.message, true);
  }

  // The API gives credits as a decimal string, rounded down (docs/money.md).
  function credits(s) {
    return `${s} credits`;
  }

  async function refreshWallet() {
    const p = account.principal;
    if (!p || p.kind !== 'member') {
      account.wallet = null;
      $('wallet').hidden = true;
      return;
    }
    account.wallet = await api('GET', '/wallet');
    $('wallet').hidden = false;
    $('wallet-credits').textContent = credits(account.wallet.credits);
  }

  async function signedIn(token, principal) {
    window.jasmin.token = token;
    account.principal = principal;
    $('signed-out').hidden = true;
    $('signed-in').hidden = false;
    $('whoami').textContent = `${principal.username} (${principal.kind})`;
    say('');
    window.dispatchEvent(new CustomEvent('jasmin:token', { detail: { token, principal } }));
    try { await refreshWallet(); } catch (err) { fail(err); }
  }

  function signedOut() {
    window.jasmin.token = null;
    account.principal = null;
    account.wallet = null;
    $('signed-out').hidden = false;
    $('signed-in').hidden = true;
    $('wallet').hidden = true;
    window.dispatchEvent(new CustomEvent('jasmin:token', { detail: { token: null, principal: null } }));
  }

  function credentials() {
    const username = $('account-username').value.trim();
    const password = $('account-password').value;
    if (!/^[A-Za-z0-9_]{3,32}$/.test(username)) throw Object.assign(new Error('username: 3-32 of A-Z a-z 0-9 _'), { code: 'bad_request' });
    if (password.length < 8) throw Object.assign(new Error('password: at least 8 characters'), { code: 'bad_request' });
    return { username, password };
  }

  async function signUp() {
    try {
      const body = { ...credentials(), adult_confirmed: $('account-adult').checked };
      const res = await api('POST', '/accounts', body, null);
      await signedIn(res.token, res.principal);
    } catch (err) { fail(err); }
  }

  async function logIn() {
    try {
      const res = await api('POST', '/sessions', credentials(), null);
      await signedIn(res.token, res.principal);
    } catch (err) { fail(err); }
  }

  async function logOut() {
    try { await api('DELETE', '/sessions/current'); } catch (err) { /* revoked already */ }
    signedOut();
  }

  function idempotencyKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function buy() {
    const pkg = $('package').value;
    if (!pkg) return;
    // One key per click: a retried request (a lost answer) is the same purchase.
    const key = idempotencyKey();
    try {
      account.lastPurchase = await api('POST', '/wallet/purchases', { package: pkg, idempotency_key: key });
      await refreshWallet();
      say(`Bought ${account.lastPurchase.credits} credits.`);
    } catch (err) { fail(err); }
  }

  async function loadPackages() {
    try {
      const { packages } = await api('GET', '/packages', undefined, null);
      const sel = $('package');
      sel.replaceChildren(...packages.map((p) => {
        const o = document.createElement('option');
        o.value = p.code;
        o.textContent = `${p.credits} credits for ${(p.price_cents / 100).toFixed(2)} ${p.currency} (+${p.vip_points} VIP)`;
        return o;
      }));
    } catch (err) { /* accounts off on this node: the panel stays empty */ }
  }

  async function adoptUrlToken() {
    // A `?token=` page (app.js read it) shows who it is.
    const token = window.jasmin.token;
    if (!token) return;
    try {
      const me = await api('GET', '/me');
      await signedIn(token, me);
    } catch (err) { /* a guest or expired token: app.js handles joins */ }
  }

  $('sign-up').addEventListener('click', signUp);
  $('log-in').addEventListener('click', logIn);
  $('log-out').addEventListener('click', logOut);
  $('buy').addEventListener('click', buy);
  account.refreshWallet = refreshWallet;
  loadPackages();
  adoptUrlToken();
})();
