// Performer search on the demo page: attribute filters -> GET /api/v1/search/performers, and a
// "favourite" button per result (PUT /api/v1/me/favourites/{username}). Uses the session token
// account.js keeps in window.jasmin.token; a click on a name puts it in the show box to watch, and
// an online performer's "Free chat" button (viewer pages) watches its show, which opens its chat.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);

  async function call(method, path) {
    const headers = {};
    const token = window.jasmin && window.jasmin.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await fetch(path, { method, headers });
    const body = r.status === 204 ? {} : await r.json();
    if (!r.ok) {
      const code = body.error ? body.error.code : `http_${r.status}`;
      throw new Error(`${(body.error && body.error.message) || `HTTP ${r.status}`}${hint(code)}`);
    }
    return body;
  }

  // What to do about a refused search or favourite.
  function hint(code) {
    const hints = {
      unauthorized: 'log in, or press Watch and confirm 18+ to get a guest session',
      adult_confirmation_required: 'confirm you are 18 or older first',
      forbidden: 'favourites are for members: log in as a member',
      favourites_full: 'remove a favourite first',
      favourites_lapsed: 'buy credits to get your favourites list back',
      rate_limited: 'too many searches: wait a moment',
      bad_request: 'check the filters',
    };
    return hints[code] ? ` (${hints[code]})` : '';
  }

  function params() {
    const q = new URLSearchParams();
    for (const name of ['q', 'build', 'hair_colour', 'category', 'language', 'age_min', 'age_max', 'price_max', 'sort']) {
      const el = $(`search-${name}`);
      if (el && el.value.trim()) q.append(name, el.value.trim());
    }
    if ($('search-online').checked) q.append('online', 'true');
    return q;
  }

  // A show's id is its performer's username. Leaves the show being watched (if any) for this one.
  function freeChatButton(username) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'search-free-chat';
    b.dataset.role = 'viewer'; // app.js's role switch hides it on performer pages
    b.hidden = !window.jasmin || window.jasmin.role !== 'viewer';
    b.textContent = 'Free chat';
    b.addEventListener('click', () => {
      if (!$('stop').disabled) $('stop').click();
      $('show-id').value = username;
      $('watch').click();
    });
    return b;
  }

  function render(page) {
    const list = $('search-results');
    list.replaceChildren();
    for (const p of page.results) {
      const li = document.createElement('li');
      li.dataset.username = p.username;
      const name = document.createElement('a');
      name.href = '#';
      name.className = 'search-name';
      name.textContent = `${p.display_name} (${p.username})`;
      name.addEventListener('click', (ev) => { ev.preventDefault(); $('show-id').value = p.username; });
      const info = document.createElement('span');
      const a = p.attributes;
      info.textContent = ` ${p.online ? 'online' : 'offline'} · ${p.price_per_minute / 100} credits/min`
        + (a.build ? ` · ${a.build}` : '') + (a.age ? ` · ${a.age}` : '');
      const fav = document.createElement('button');
      fav.type = 'button';
      fav.className = 'search-favourite';
      fav.textContent = p.favourite ? '★ favourite' : '☆ add favourite';
      fav.disabled = p.favourite;
      fav.addEventListener('click', async () => {
        try {
          await call('PUT', `/api/v1/me/favourites/${encodeURIComponent(p.username)}`);
          fav.textContent = '★ favourite';
          fav.disabled = true;
          $('search-status').textContent = `${p.username} is a favourite`;
        } catch (err) { $('search-status').textContent = err.message; }
      });
      li.append(name, info, ' ', fav);
      if (p.online) li.append(' ', freeChatButton(p.username));
      list.append(li);
    }
    $('search-status').textContent = `${page.total} found`;
  }

  async function run(ev) {
    if (ev) ev.preventDefault();
    try {
      render(await call('GET', `/api/v1/search/performers?${params()}`));
    } catch (err) { $('search-status').textContent = err.message; }
  }

  window.addEventListener('DOMContentLoaded', () => {
    const form = $('search');
    if (form) form.addEventListener('submit', run);
  });
})();
