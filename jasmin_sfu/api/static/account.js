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
    demo: null,        // GET /demo/config's `demo`: the node's seeded demo accounts, or null
  };
  const urlShow = new URLSearchParams(location.search).has('show');

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
    say(`${err.message}${hint(err.code)}`, true);
  }

  // What to do about an error (the code and the server's message stay first).
  function hint(code) {
    const demo = Boolean(account.demo);
    const hints = {
      invalid_credentials: demo ? 'check the username and password, or use "Log in as demo …"'
        : 'check the username and password',
      username_unavailable: 'pick another username',
      rate_limited: 'too many failed logins: wait a minute, then try again',
      unauthorized: 'your session ended: log in again',
      forbidden: demo ? 'demo credits are for the demo member: buy a package instead' : 'this needs another account',
      payment_declined: 'try another card',
      idempotency_conflict: 'click "Buy credits" again',
      accounts_unavailable: 'this node runs without accounts',
      billing_unavailable: 'this node runs without billing',
      payments_unavailable: 'this node takes no payments',
      demo_off: 'this node has no demo accounts: buy a package',
      busy: 'the database is busy: try again in a second',
      adult_confirmation_required: 'tick "I am 18 or older", then try again',
    };
    return hints[code] ? ` (${hints[code]})` : '';
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
    $('demo-top-up').hidden = !isDemoMember();
    // Credits a running private holds (its current grant) are the member's still: said beside them.
    const held = account.wallet.held_units;
    $('wallet-credits').textContent = credits(account.wallet.credits)
      + (held ? ` (+${(Math.floor(held * 100 / account.wallet.units_per_credit) / 100).toFixed(2)} held by your private)` : '');
    window.dispatchEvent(new CustomEvent('jasmin:wallet', { detail: account.wallet }));
  }

  async function signedIn(token, principal) {
    window.jasmin.token = token;
    account.principal = principal;
    $('signed-out').hidden = true;
    $('signed-in').hidden = false;
    $('whoami').textContent = `${principal.username} (${principal.kind})`;
    say('');
    // A performer goes live on its own show (its username), unless the URL named one.
    if (principal.kind === 'performer' && !urlShow && !window.jasmin.signaling) $('show-id').value = principal.username;
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

  // True when the credits landed (money.js's "Top up now" uses it too).
  async function buy() {
    const pkg = $('package').value;
    if (!pkg) {
      say('No credit package is offered on this node.', true);
      return false;
    }
    // One key per click: a retried request (a lost answer) is the same purchase.
    const key = idempotencyKey();
    try {
      account.lastPurchase = await api('POST', '/wallet/purchases', { package: pkg, idempotency_key: key });
      await refreshWallet();
      say(`Bought ${account.lastPurchase.credits} credits.`);
      return true;
    } catch (err) { fail(err); return false; }
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

  // -- the demo accounts of a `make run` node (jasmin_sfu/services/demo.py) --------------

  const demoAccount = (role) => (account.demo ? account.demo.accounts.find((a) => a.role === role) : null);
  const isDemoMember = () => {
    const m = demoAccount('member');
    return Boolean(m && account.principal && account.principal.username === m.username);
  };

  // Log in as the node's demo performer or member, then pick the matching view.
  async function demoLogIn(role) {
    const a = demoAccount(role);
    if (!a) return;
    $('account-username').value = a.username;
    $('account-password').value = a.password;
    try {
      const res = await api('POST', '/sessions', { username: a.username, password: a.password }, null);
      if (window.jasmin.signaling) window.jasmin.stop();
      window.jasmin.selectRole(role === 'performer' ? 'performer' : 'viewer');
      if (!urlShow) $('show-id').value = account.demo.show_id;
      await signedIn(res.token, res.principal);
    } catch (err) { fail(err); }
  }

  async function demoTopUp() {
    try {
      const res = await fetch('/demo/top-up', { method: 'POST', headers: { Authorization: `Bearer ${window.jasmin.token}` } });
      const data = await res.json();
      if (!res.ok) throw Object.assign(new Error(`${data.error.code}: ${data.error.message}`), { code: data.error.code });
      await refreshWallet();
      say(`Added ${account.demo.top_up_credits} demo credits: ${credits(data.credits)}.`);
      return true;
    } catch (err) { fail(err); return false; }
  }

  // What the node tells its page: whether it trusts client ids (the "Member id" field),
  // whether it takes simulcast (the performer then sends layers) and its demo accounts;
  // `?demo=performer|member` logs in as one at once.
  async function loadDemoConfig() {
    let cfg;
    try {
      const res = await fetch('/demo/config');
      if (!res.ok) return;
      cfg = await res.json();
    } catch (err) { return; }
    window.jasmin.trustClientIds = Boolean(cfg.trust_client_ids);
    window.jasmin.simulcast = Boolean(cfg.simulcast);
    window.jasmin.selectRole(window.jasmin.role);
    account.demo = cfg.demo;
    if (!cfg.demo) return;
    $('demo-logins').hidden = false;
    if (!urlShow && !window.jasmin.signaling) $('show-id').value = cfg.demo.show_id;
    const wanted = window.jasmin.demoLogin;
    if ((wanted === 'performer' || wanted === 'member') && !window.jasmin.token) await demoLogIn(wanted);
    else if (account.principal) $('demo-top-up').hidden = !isDemoMember();
  }

  $('demo-performer').addEventListener('click', () => demoLogIn('performer'));
  $('demo-member').addEventListener('click', () => demoLogIn('member'));
  $('demo-top-up').addEventListener('click', demoTopUp);
  Object.assign(account, { demoLogIn, demoTopUp, buy, isDemoMember });
  account.ready = loadDemoConfig();
  $('sign-up').addEventListener('click', signUp);
  $('log-in').addEventListener('click', logIn);
  $('log-out').addEventListener('click', logOut);
  $('buy').addEventListener('click', buy);
  account.refreshWallet = refreshWallet;
  loadPackages();
  adoptUrlToken();
})();
