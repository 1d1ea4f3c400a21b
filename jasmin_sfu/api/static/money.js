// The money console of the demo page: what a private costs and earns, as it runs.
// Performer: its price per minute (read and set: PATCH /api/v1/performers/{username}, and
// `show.settings` when live, so the next private takes it), its earnings from the ledger
// (GET /api/v1/performers/{username}/earnings) and the running private's seconds and share.
// Member: its private's seconds and cost, the wallet as the ledger holds it, the server's
// `private.credit_warning` with a "Top up now" button, and `private.credit_exhausted`.
// Like chat.js it rides on app.js's Signaling (the join answer, then the show's events).
// Seconds and cost are the page's count from `private.started` at the private's price; the
// ledger's figures (wallet, earnings) are refreshed from the API.
'use strict';

(() => {
  const S = window.jasmin && window.jasmin.Signaling;
  const account = window.jasminAccount;
  if (!S || !account) return;
  const jasmin = window.jasmin;
  const $ = (id) => document.getElementById(id);

  // Exposed for tests and the console.
  const money = window.jasminMoney = {
    price: null,        // performer: its price, hundredths of a credit per minute (null: not known yet)
    earnings: null,     // performer: the last GET .../earnings answer
    earningsAtLive: null, // performer: earnings units when it went live
    private: null,      // the running private this page takes part in: {memberId, showId, price, startedAt}
    last: null,         // the last private that ended: {seconds, price, reason}
    warning: null,      // member: {secondsLeft, at} of the last credit warning (at: performance.now())
    exhausted: false,   // member: its credits ran out and ended its private
    toppedUp: false,    // member: a top-up landed after the last warning
    lastError: null,
  };
  const wired = new WeakSet();

  const fmt = (units) => (Math.floor(units / 60) / 100).toFixed(2); // ledger units as credits, rounded down (docs/money.md)
  const perMinute = (price) => `${(price / 100).toFixed(2)} credits a minute`;
  const seconds = (p) => (p ? Math.max(0, Math.floor((performance.now() - p.startedAt) / 1000)) : 0);
  const cost = (secs, price) => fmt(secs * price); // a second costs `price` units (docs/money.md)
  const isPerformer = () => jasmin.role === 'performer' && account.principal && account.principal.kind === 'performer';

  function say(id, text, isError = false) {
    const el = $(id);
    el.textContent = text;
    el.dataset.error = isError ? 'true' : 'false';
  }

  function failed(id, err) {
    money.lastError = err.code || 'error';
    say(id, `${err.message}${hint(err.code)}`, true);
  }

  function hint(code) {
    if (code === 'unauthorized') return ' (your session ended: log in again)';
    if (code === 'forbidden') return ' (log in as this show\'s performer)';
    if (code === 'bad_request') return ' (a price is 0.01 to 10000.00 credits a minute)';
    if (code === 'billing_unavailable' || code === 'accounts_unavailable') return ' (this node runs without billing)';
    return ' (try again; reload the page if it persists)';
  }

  // -- the join answer and the show's events ------------------------------------------------

  const original = S.prototype.request;
  S.prototype.request = function request(method, data = {}) {
    const p = original.call(this, method, data);
    if (method === 'join') p.then((joined) => { if (joined) entered(this, joined); }, () => {});
    return p;
  };

  function entered(sig, joined) {
    Object.assign(money, { private: null, last: null, warning: null, exhausted: false, toppedUp: false });
    if (joined.role === 'performer') {
      if (joined.price_per_minute != null) showPrice(joined.price_per_minute);
      money.earningsAtLive = money.earnings ? money.earnings.units : null;
      if (joined.private_member) started({ member_id: joined.private_member, show_id: joined.show_id }, false);
      refreshEarnings();
    }
    if (wired.has(sig)) return;
    wired.add(sig);
    const on = (name, fn) => sig.on(name, (d) => { if (jasmin.signaling === sig) { fn(d); render(); } });
    on('private.started', (d) => started(d, true));
    on('private.ended', (d) => {
      if (!money.private || money.private.memberId !== d.member_id) return;
      money.last = { seconds: seconds(money.private), price: money.private.price, reason: d.reason };
      money.private = null;
      money.warning = null;
      if (isPerformer()) { // the ledger posts the last seconds when credit control closes the session
        setTimeout(refreshEarnings, 1000);
        setTimeout(refreshEarnings, 3000);
      } else account.refreshWallet().catch(() => {});
    });
    on('private.credit_warning', (d) => {
      if (!money.private || money.private.memberId !== d.member_id) return;
      money.warning = { secondsLeft: d.seconds_left, at: performance.now() };
      money.toppedUp = false;
    });
    on('private.credit_exhausted', (d) => {
      if (jasmin.memberId && d.member_id === jasmin.memberId) money.exhausted = true;
    });
  }

  async function started(d, now) {
    const mine = jasmin.role === 'performer' || d.member_id === jasmin.memberId;
    if (!mine) return;
    const p = { memberId: d.member_id, showId: d.show_id, price: null, startedAt: performance.now(), known: now };
    Object.assign(money, { private: p, warning: null, exhausted: false, toppedUp: false, last: null });
    if (jasmin.role === 'performer') {
      p.price = money.price;
      return;
    }
    // The member: the show's price is its performer's profile price (docs/signaling.md, join rule 3).
    try {
      const profile = await account.api('GET', `/performers/${encodeURIComponent(d.show_id)}`);
      if (money.private === p) p.price = profile.price_per_minute;
    } catch (err) { /* a group show or no profile: the meter shows seconds only */ }
    render();
  }

  // -- the performer: price and earnings ------------------------------------------------------

  function showPrice(price) {
    money.price = price;
    if (document.activeElement !== $('price')) $('price').value = (price / 100).toFixed(2);
  }

  async function loadProfile() {
    try {
      const me = await account.api('GET', '/me');
      if (me.performer) showPrice(me.performer.price_per_minute);
    } catch (err) { failed('price-status', err); }
    await refreshEarnings();
    render();
  }

  async function refreshEarnings() {
    const p = account.principal;
    if (!p || p.kind !== 'performer') return;
    try {
      money.earnings = await account.api('GET', `/performers/${encodeURIComponent(p.username)}/earnings`);
      if (money.earningsAtLive === null && jasmin.signaling) money.earningsAtLive = money.earnings.units;
    } catch (err) { failed('price-status', err); }
    render();
  }

  async function setPrice(ev) {
    ev.preventDefault();
    const p = account.principal;
    const credits = Number($('price').value);
    const price = Math.round(credits * 100);
    if (!p || p.kind !== 'performer') {
      say('price-status', 'Log in as a performer to set a price.', true);
      return;
    }
    if (!Number.isFinite(credits) || price < 1 || price > 1000000) {
      say('price-status', 'A price is 0.01 to 10000.00 credits a minute.', true);
      return;
    }
    try {
      // The profile keeps it; a live show takes it for its next private at once.
      const profile = await account.api('PATCH', `/performers/${encodeURIComponent(p.username)}`, { price_per_minute: price });
      let applied = profile.price_per_minute;
      const sig = jasmin.signaling;
      if (sig && jasmin.role === 'performer' && jasmin.showState && jasmin.showState !== 'offline') {
        applied = (await sig.request('show.settings', { price_per_minute: price })).price_per_minute;
      }
      showPrice(applied);
      say('price-status', `Your price is now ${perMinute(applied)}; it applies from your next private`
        + `${money.private ? ' (the running one keeps its price)' : ''}.`);
    } catch (err) { failed('price-status', err); }
    render();
  }

  // -- the member: top up now ----------------------------------------------------------------

  async function topUpNow() {
    // The demo member gets demo credits; anyone else buys the package chosen in the wallet.
    const ok = account.isDemoMember() ? await account.demoTopUp() : await account.buy();
    if (ok && money.private) {
      money.toppedUp = true;
      money.warning = null;
    }
    render();
  }

  // -- rendering --------------------------------------------------------------------------------

  function render() {
    const perf = isPerformer();
    $('performer-money').hidden = !perf;
    if (perf) renderPerformer();
    const member = jasmin.role === 'viewer' && account.principal && account.principal.kind === 'member';
    const show = member && (money.private !== null || money.last !== null || money.exhausted);
    $('member-money').hidden = !show;
    if (show) renderMember();
  }

  function renderPerformer() {
    const e = money.earnings;
    $('earnings-total').textContent = e ? `${e.credits} credits` : '…';
    const since = e && money.earningsAtLive !== null && jasmin.signaling ? e.units - money.earningsAtLive : null;
    $('earnings-session').textContent = since !== null ? `(+${fmt(since)} since you went live)` : '';
    const p = money.private;
    const share = e ? e.performer_share_bp / 10000 : null;
    let text = '';
    if (p) {
      const secs = seconds(p);
      text = `Private with ${p.memberId}: ${p.known ? `${secs} s` : 'running'}`;
      if (p.price !== null && p.known) {
        text += ` · the member pays ≈${cost(secs, p.price)} credits at ${perMinute(p.price)}`;
        if (share !== null) text += ` · your share ≈${cost(secs * share, p.price)}`;
      }
      if (money.warning) text += ` · the member's credits run out in ${left()} s`;
    } else if (money.last) {
      text = `Last private: ${money.last.seconds} s (${money.last.reason}); your earnings above include it once the ledger has posted it.`;
    }
    $('private-earnings').hidden = !text;
    $('private-earnings').textContent = text;
  }

  const left = () => Math.max(0, money.warning.secondsLeft - Math.floor((performance.now() - money.warning.at) / 1000));

  function renderMember() {
    const p = money.private;
    const w = account.wallet;
    const wallet = w ? ` · wallet ${w.credits} credits${w.held_units ? ` (+${fmt(w.held_units)} held by the private)` : ''}` : '';
    if (p) {
      const secs = seconds(p);
      const price = p.price !== null ? ` · ≈${cost(secs, p.price)} credits at ${perMinute(p.price)}` : '';
      say('private-meter', `Your private: ${secs} s billed${price}${wallet}`);
    } else if (money.exhausted) {
      say('private-meter', `Your credits ran out and the private ended. Buy credits, then request a private again.${wallet}`, true);
    } else if (money.last) {
      const price = money.last.price !== null ? `, ≈${cost(money.last.seconds, money.last.price)} credits` : '';
      say('private-meter', `Your private ended (${money.last.reason}): ${money.last.seconds} s${price}${wallet}`);
    }
    const warn = $('credit-warning');
    const demo = account.isDemoMember();
    $('warning-top-up').textContent = demo ? 'Top up now (demo credits)' : 'Top up now (buy the package chosen above)';
    if (money.warning && p) {
      warn.hidden = false;
      warn.dataset.kind = 'warning';
      $('credit-warning-text').textContent = `Your credits run out in ${left()} s and the private then ends. `
        + 'Top up now to keep it going: it continues without a break.';
      $('warning-top-up').hidden = false;
    } else if (money.toppedUp && p) {
      warn.hidden = false;
      warn.dataset.kind = 'ok';
      $('credit-warning-text').textContent = 'Topped up: your private continues.';
      $('warning-top-up').hidden = true;
    } else {
      warn.hidden = true;
    }
  }

  // -- wiring -----------------------------------------------------------------------------------

  $('price-form').addEventListener('submit', setPrice);
  $('warning-top-up').addEventListener('click', topUpNow);
  window.addEventListener('jasmin:token', (ev) => {
    money.earnings = null;
    money.earningsAtLive = null;
    if (ev.detail.principal && ev.detail.principal.kind === 'performer') loadProfile();
    render();
  });
  window.addEventListener('jasmin:wallet', render);
  // Once a second: the meters; every 3 s while a private runs: the ledger's wallet and earnings.
  let tick = 0;
  setInterval(() => {
    tick += 1;
    if (!jasmin.signaling) { render(); return; }
    if (tick % 3 === 0 && money.private) {
      if (isPerformer()) refreshEarnings();
      else if (account.wallet) account.refreshWallet().catch(() => {});
    }
    render();
  }, 1000);
  // The running private's seconds as this page counts them (tests, the console).
  Object.assign(money, { refreshEarnings, render, elapsed: () => seconds(money.private) });
  render();
})();
